-- Events by attribute: for one event name and one of its attributes or metrics, the events and distinct actors per UTC day and value, between two days (inclusive). Parameters: event name, attribute name, first day, last day (YYYY-MM-DD).
-- Repeats: distinct event_id per day. On Athena: EXECUTE events_by_attribute USING 'level.complete', 'level', '2026-11-01', '2026-11-30'
WITH params AS (
  SELECT CAST(? AS VARCHAR) AS event_name, CAST(? AS VARCHAR) AS attribute
),
e AS (
  SELECT a.dt, a.event_id, COALESCE(a.anonymous_id, a.user_id) AS actor,
         CASE WHEN contains(map_keys(a.properties), p.attribute) THEN a.properties[p.attribute] END AS value
  FROM app_events a CROSS JOIN params p
  WHERE a.dt BETWEEN ? AND ? AND a.event = p.event_name
)
SELECT dt, value, count(DISTINCT event_id) AS events, count(DISTINCT actor) AS actors
FROM e
GROUP BY dt, value
ORDER BY dt, value
