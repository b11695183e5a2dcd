-- Authentication failures and the sign-in success rate per UTC day and user pool: from the user-activity log (only it sees failures), else from a backfilled Pinpoint archive. Parameters: first day, last day (YYYY-MM-DD).
-- Repeats: distinct event_id per day. On Athena: EXECUTE auth_failures USING '2026-11-01', '2026-11-30'
WITH counts AS (
  SELECT dt, user_pool_id, origin,
         count(DISTINCT CASE WHEN type = '_userauth.sign_in' THEN event_id END) AS sign_ins,
         count(DISTINCT CASE WHEN type = '_userauth.auth_fail' THEN event_id END) AS failures
  FROM auth_events
  WHERE dt BETWEEN ? AND ? AND origin IN ('activity_log', 'pinpoint')
  GROUP BY dt, user_pool_id, origin
),
ranked AS (
  SELECT *, row_number() OVER (PARTITION BY dt, user_pool_id ORDER BY CASE origin WHEN 'activity_log' THEN 0 ELSE 1 END) AS rn
  FROM counts
  WHERE sign_ins + failures > 0
)
SELECT dt, 'pool=' || user_pool_id AS scope, origin, sign_ins, failures,
       CAST(sign_ins AS DOUBLE) / (sign_ins + failures) AS success_rate
FROM ranked
WHERE rn = 1
ORDER BY dt, scope
