-- A funnel of up to 5 ordered steps within a time window: of the actors (installs, else users) who did step 1, how many then did step 2, then step 3, ... each after the one before and within the window from their first step 1 (Amplitude's and Pinpoint's "this order"). Parameters: the window in seconds, then 5 event names (an empty name ends the funnel early), then the first and last day (YYYY-MM-DD) of the events read (every step is within them).
-- Repeats: the first copy of each event_id per day (they cannot move a first time anyway). On Athena: EXECUTE funnel USING 3600, '_session.start', 'level.complete', '_monetization.purchase', '', '', '2026-11-01', '2026-11-30'
WITH params AS (
  SELECT CAST(? AS BIGINT) AS window_s,
         CAST(? AS VARCHAR) AS s1, CAST(? AS VARCHAR) AS s2, CAST(? AS VARCHAR) AS s3,
         CAST(? AS VARCHAR) AS s4, CAST(? AS VARCHAR) AS s5
),
ev AS (
  SELECT COALESCE(anonymous_id, user_id) AS actor, event, dt,
         CAST(replace(substr("timestamp", 1, 23), 'T', ' ') AS TIMESTAMP) AS t,
         row_number() OVER (PARTITION BY dt, event_id ORDER BY received_at) AS copy
  FROM app_events
  WHERE dt BETWEEN ? AND ?
),
f1 AS (
  SELECT e.actor, min(e.t) AS t0
  FROM ev e CROSS JOIN params p
  WHERE e.copy = 1 AND e.event = p.s1
  GROUP BY e.actor
),
f2 AS (
  SELECT f.actor, f.t0, min(e.t) AS t
  FROM f1 f CROSS JOIN params p JOIN ev e ON e.actor = f.actor AND e.copy = 1 AND e.event = p.s2
  WHERE e.t > f.t0 AND date_diff('millisecond', f.t0, e.t) <= p.window_s * 1000
  GROUP BY f.actor, f.t0
),
f3 AS (
  SELECT f.actor, f.t0, min(e.t) AS t
  FROM f2 f CROSS JOIN params p JOIN ev e ON e.actor = f.actor AND e.copy = 1 AND e.event = p.s3
  WHERE e.t > f.t AND date_diff('millisecond', f.t0, e.t) <= p.window_s * 1000
  GROUP BY f.actor, f.t0
),
f4 AS (
  SELECT f.actor, f.t0, min(e.t) AS t
  FROM f3 f CROSS JOIN params p JOIN ev e ON e.actor = f.actor AND e.copy = 1 AND e.event = p.s4
  WHERE e.t > f.t AND date_diff('millisecond', f.t0, e.t) <= p.window_s * 1000
  GROUP BY f.actor, f.t0
),
f5 AS (
  SELECT f.actor, f.t0, min(e.t) AS t
  FROM f4 f CROSS JOIN params p JOIN ev e ON e.actor = f.actor AND e.copy = 1 AND e.event = p.s5
  WHERE e.t > f.t AND date_diff('millisecond', f.t0, e.t) <= p.window_s * 1000
  GROUP BY f.actor, f.t0
)
SELECT 1 AS step, (SELECT s1 FROM params) AS event, (SELECT count(*) FROM f1) AS actors
UNION ALL SELECT 2, (SELECT s2 FROM params), (SELECT count(*) FROM f2)
UNION ALL SELECT 3, (SELECT s3 FROM params), (SELECT count(*) FROM f3)
UNION ALL SELECT 4, (SELECT s4 FROM params), (SELECT count(*) FROM f4)
UNION ALL SELECT 5, (SELECT s5 FROM params), (SELECT count(*) FROM f5)
ORDER BY step
