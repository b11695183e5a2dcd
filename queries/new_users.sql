-- New users per UTC day: authenticating users whose first active day (over all the history in the table) is that day.
-- Deduplication: one first day per actor.
WITH active AS (
  SELECT user_pool_id AS scope, user_sub AS actor, min(dt) AS first_day
  FROM auth_events
  WHERE type IN ('_userauth.sign_in', '_userauth.tokens_issued', '_userauth.token_refresh')
    AND user_sub IS NOT NULL
  GROUP BY user_pool_id, user_sub
)
SELECT first_day AS dt, 'pool=' || scope AS scope, count(*) AS new_users
FROM active
GROUP BY first_day, scope
ORDER BY dt, scope
