-- Sessions per UTC day: started (_session.start), ended (sessions with a _session.stop, once per session however many stops it sends), and engaged sessions by Clickstream Analytics on AWS's definition: longer than 10 s (the stop event's duration, else its start and stop), or at least 2 screen or page views. A session is placed on the day it started (its start time, else its first event), whatever the range. Parameters: first day, last day (YYYY-MM-DD), then the same two again.
-- Repeats: the first copy of each event_id per day; a session is its id. On Athena: EXECUTE sessions USING '2026-11-01', '2026-11-30', '2026-11-01', '2026-11-30'
WITH e AS (
  SELECT dt, event, event_id, session.id AS session_id, session.duration_ms AS duration_ms,
         substr(session.start, 1, 10) AS started,
         row_number() OVER (PARTITION BY dt, event_id ORDER BY received_at) AS copy
  FROM app_events
  WHERE dt BETWEEN ? AND ?
),
counts AS (
  SELECT dt,
         count(CASE WHEN event = '_session.start' THEN 1 END) AS sessions_started,
         count(DISTINCT CASE WHEN event = '_session.stop' THEN COALESCE(session_id, event_id) END) AS sessions_ended
  FROM e WHERE copy = 1
  GROUP BY dt
),
per_session AS (
  SELECT session_id, COALESCE(min(started), min(dt)) AS dt, max(duration_ms) AS duration_ms,
         count(DISTINCT CASE WHEN event IN ('_screen_view', 'pageView', '_page_view') THEN event_id END) AS views
  FROM e WHERE copy = 1 AND session_id IS NOT NULL
  GROUP BY session_id
),
engaged AS (
  SELECT dt, count(*) AS engaged_sessions
  FROM per_session
  WHERE (duration_ms > 10000 OR views >= 2) AND dt BETWEEN ? AND ?
  GROUP BY dt
)
SELECT c.dt, c.sessions_started, c.sessions_ended, COALESCE(g.engaged_sessions, 0) AS engaged_sessions
FROM counts c LEFT JOIN engaged g ON g.dt = c.dt
ORDER BY c.dt
