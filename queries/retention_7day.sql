-- 7-day retention per cohort day (Pinpoint's): of a day's authenticating users, those active again on any of the 7 days after. Only cohorts whose 7 days are all read are given. Parameters: first cohort day, the last day to read (YYYY-MM-DD: the last cohort is 7 days before it), and that last day again.
-- Repeats: distinct actors per day. On Athena: EXECUTE retention_7day USING '2026-11-01', '2026-12-07', '2026-12-07'
WITH active AS (
  SELECT DISTINCT user_pool_id AS scope, user_sub AS actor, CAST(dt AS DATE) AS day
  FROM auth_events
  WHERE dt BETWEEN ? AND ?
    AND type IN ('_userauth.sign_in', '_userauth.tokens_issued', '_userauth.token_refresh')
    AND user_sub IS NOT NULL
)
SELECT CAST(a.day AS VARCHAR) AS dt, 'pool=' || a.scope AS scope,
       count(DISTINCT a.actor) AS active,
       count(DISTINCT r.actor) AS retained7
FROM active a
LEFT JOIN active r
  ON r.scope = a.scope AND r.actor = a.actor AND date_diff('day', a.day, r.day) BETWEEN 1 AND 7
WHERE date_diff('day', a.day, CAST(? AS DATE)) >= 7
GROUP BY a.day, a.scope
ORDER BY dt, scope
