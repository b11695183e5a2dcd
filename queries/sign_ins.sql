-- Sign-ins per UTC day (placeholder; the real query replaces it).
SELECT dt, count(*) AS sign_ins
FROM auth_events
WHERE type = '_userauth.sign_in'
GROUP BY dt
ORDER BY dt;
