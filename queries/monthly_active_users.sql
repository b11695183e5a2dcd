-- Monthly active users per calendar month (UTC), both definitions: Pinpoint's "active users month-to-date". Parameters: first day, last day (YYYY-MM-DD; the first month is read from its first day whatever the first day given, the last month up to the last day: month to date), then the same two again (one pair per table read).
-- Repeats: distinct actors. On Athena: EXECUTE monthly_active_users USING '2026-11-01', '2026-11-30', '2026-11-01', '2026-11-30'
WITH auth AS (
  SELECT substr(dt, 1, 7) AS month, user_pool_id AS scope, user_sub AS actor
  FROM auth_events
  WHERE dt BETWEEN substr(?, 1, 7) || '-01' AND ?
    AND type IN ('_userauth.sign_in', '_userauth.tokens_issued', '_userauth.token_refresh')
    AND user_sub IS NOT NULL
),
app AS (
  SELECT substr(dt, 1, 7) AS month, COALESCE(anonymous_id, user_id) AS actor, context.device_id AS device
  FROM app_events
  WHERE dt BETWEEN substr(?, 1, 7) || '-01' AND ?
    AND (event = '_session.start' OR session.id IS NOT NULL OR context.session_id IS NOT NULL)
)
SELECT month, 'authenticating_users' AS definition, 'pool=' || scope AS scope, count(DISTINCT actor) AS active
FROM auth GROUP BY month, scope
UNION ALL
SELECT month, 'session_users', 'app', count(DISTINCT actor) FROM app GROUP BY month
UNION ALL
SELECT month, 'session_devices', 'app', count(DISTINCT device) FROM app WHERE device IS NOT NULL GROUP BY month
ORDER BY month, definition, scope
