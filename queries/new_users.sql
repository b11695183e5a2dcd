-- New users per UTC day: authenticating users whose first active day ever is that day. "Ever" needs the history: the days before the first are read too (only to rule out users seen before; keep a table of first days with CTAS when that grows costly). Parameters: first day, last day (YYYY-MM-DD), and the first day again.
-- Repeats: one first day per actor. On Athena: EXECUTE new_users USING '2026-11-01', '2026-11-30', '2026-11-01'
WITH recent AS (
  SELECT user_pool_id AS scope, user_sub AS actor, min(dt) AS first_day
  FROM auth_events
  WHERE dt BETWEEN ? AND ?
    AND type IN ('_userauth.sign_in', '_userauth.tokens_issued', '_userauth.token_refresh')
    AND user_sub IS NOT NULL
  GROUP BY user_pool_id, user_sub
),
seen_before AS (
  SELECT DISTINCT user_pool_id AS scope, user_sub AS actor
  FROM auth_events
  WHERE dt < ?
    AND type IN ('_userauth.sign_in', '_userauth.tokens_issued', '_userauth.token_refresh')
    AND user_sub IS NOT NULL
)
SELECT r.first_day AS dt, 'pool=' || r.scope AS scope, count(*) AS new_users
FROM recent r
LEFT JOIN seen_before b ON b.scope = r.scope AND b.actor = r.actor
WHERE b.actor IS NULL
GROUP BY r.first_day, r.scope
ORDER BY dt, scope
