-- New users per UTC day: authenticating users whose first active day ever is that day. "Ever" needs the history: this query reads every day up to its last (its cost grows with the archive; keep a table of first days with CTAS when that matters). Parameters: last day, then first day (YYYY-MM-DD).
-- Repeats: one first day per actor. On Athena: EXECUTE new_users USING '2026-11-30', '2026-11-01'
WITH active AS (
  SELECT user_pool_id AS scope, user_sub AS actor, min(dt) AS first_day
  FROM auth_events
  WHERE dt <= ?
    AND type IN ('_userauth.sign_in', '_userauth.tokens_issued', '_userauth.token_refresh')
    AND user_sub IS NOT NULL
  GROUP BY user_pool_id, user_sub
)
SELECT first_day AS dt, 'pool=' || scope AS scope, count(*) AS new_users
FROM active
WHERE first_day >= ?
GROUP BY first_day, scope
ORDER BY dt, scope
