-- Daily active users per UTC day, both definitions: authenticating users per user pool (a user_sub with a sign-in, tokens issued or a token refresh that day) and session users and devices of the app (an install, else a user, with an event in a session). Parameters: first day, last day (YYYY-MM-DD), then the same two again (one pair per table read).
-- Repeats: distinct actors per day. On Athena: EXECUTE daily_active_users USING '2026-11-01', '2026-11-30', '2026-11-01', '2026-11-30'
WITH auth AS (
  SELECT dt, user_pool_id AS scope, user_sub AS actor
  FROM auth_events
  WHERE dt BETWEEN ? AND ?
    AND type IN ('_userauth.sign_in', '_userauth.tokens_issued', '_userauth.token_refresh')
    AND user_sub IS NOT NULL
),
app AS (
  SELECT dt, COALESCE(anonymous_id, user_id) AS actor, context.device_id AS device
  FROM app_events
  WHERE dt BETWEEN ? AND ?
    AND (event = '_session.start' OR session.id IS NOT NULL OR context.session_id IS NOT NULL)
)
SELECT dt, 'authenticating_users' AS definition, 'pool=' || scope AS scope, count(DISTINCT actor) AS active
FROM auth GROUP BY dt, scope
UNION ALL
SELECT dt, 'session_users', 'app', count(DISTINCT actor) FROM app GROUP BY dt
UNION ALL
SELECT dt, 'session_devices', 'app', count(DISTINCT device) FROM app WHERE device IS NOT NULL GROUP BY dt
ORDER BY dt, definition, scope
