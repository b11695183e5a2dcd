-- Sign-ins, sign-in attempts, sign-ups and token refreshes per UTC day, user pool and origin (trigger, activity_log, pinpoint: each origin counts on its own, never add them). Parameters: first day, last day (YYYY-MM-DD).
-- Repeats: distinct event_id per day. On Athena: EXECUTE sign_ins USING '2026-11-01', '2026-11-30'
SELECT dt, 'pool=' || user_pool_id AS scope, origin,
       count(DISTINCT CASE WHEN type = '_userauth.sign_in' THEN event_id END) AS sign_ins,
       count(DISTINCT CASE WHEN type = '_userauth.sign_in_attempt' THEN event_id END) AS sign_in_attempts,
       count(DISTINCT CASE WHEN type = '_userauth.sign_up' THEN event_id END) AS sign_ups,
       count(DISTINCT CASE WHEN type = '_userauth.token_refresh' THEN event_id END) AS token_refreshes
FROM auth_events
WHERE dt BETWEEN ? AND ?
GROUP BY dt, user_pool_id, origin
ORDER BY dt, scope, origin
