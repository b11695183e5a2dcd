-- Daily active users: distinct signed-in users per UTC day (placeholder; the real query replaces it).
SELECT dt, count(DISTINCT user_sub) AS active_users
FROM auth_events
WHERE type = '_userauth.sign_in'
GROUP BY dt
ORDER BY dt;
