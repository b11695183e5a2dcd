-- Events by attribute: for one event name and one of its attributes or metrics, the events and distinct actors per UTC day and value, between two days (inclusive); events without the attribute are not counted. Parameters: first day, last day (YYYY-MM-DD), event name, attribute name.
-- Repeats: distinct event_id per day. On Athena: EXECUTE events_by_attribute USING '2026-11-01', '2026-11-30', 'level.complete', 'level'
SELECT a.dt, a.properties[k.key] AS value,
       count(DISTINCT a.event_id) AS events,
       count(DISTINCT COALESCE(a.anonymous_id, a.user_id)) AS actors
FROM (SELECT * FROM app_events WHERE dt BETWEEN ? AND ? AND event = ?) a
CROSS JOIN UNNEST(map_keys(a.properties)) AS k(key)
WHERE k.key = ?
GROUP BY a.dt, a.properties[k.key]
ORDER BY dt, value
