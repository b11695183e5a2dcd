-- A funnel of up to 5 ordered steps within a time window: of the actors (installs, else users) who did step 1, how many then did step 2, then step 3, ... each after the one before and within the window (to the millisecond) from their first step 1 (Amplitude's and Pinpoint's "this order"), all between two days. Parameters: first day, last day (YYYY-MM-DD), step 1's event name, then for steps 2 to 5 each its event name and the window in seconds (an empty name ends the funnel early).
-- Repeats: the first copy of each event_id per day (they cannot move a first time anyway). On Athena: EXECUTE funnel USING '2026-11-01', '2026-11-30', '_session.start', 'level.complete', 3600, '_monetization.purchase', 3600, '', 3600, '', 3600
WITH ev AS (
  SELECT COALESCE(anonymous_id, user_id) AS actor, event,
         CAST(replace(substr("timestamp", 1, 23), 'T', ' ') AS TIMESTAMP) AS t,
         row_number() OVER (PARTITION BY dt, event_id ORDER BY received_at) AS copy
  FROM app_events
  WHERE dt BETWEEN ? AND ?
),
f1 AS (
  SELECT actor, min(t) AS t0
  FROM ev
  WHERE copy = 1 AND event = ?
  GROUP BY actor
),
f2 AS (
  SELECT f.actor, f.t0, min(e.t) AS t
  FROM f1 f JOIN ev e ON e.actor = f.actor AND e.copy = 1
  WHERE e.event = ? AND e.t > f.t0 AND date_diff('millisecond', f.t0, e.t) <= ? * 1000
  GROUP BY f.actor, f.t0
),
f3 AS (
  SELECT f.actor, f.t0, min(e.t) AS t
  FROM f2 f JOIN ev e ON e.actor = f.actor AND e.copy = 1
  WHERE e.event = ? AND e.t > f.t AND date_diff('millisecond', f.t0, e.t) <= ? * 1000
  GROUP BY f.actor, f.t0
),
f4 AS (
  SELECT f.actor, f.t0, min(e.t) AS t
  FROM f3 f JOIN ev e ON e.actor = f.actor AND e.copy = 1
  WHERE e.event = ? AND e.t > f.t AND date_diff('millisecond', f.t0, e.t) <= ? * 1000
  GROUP BY f.actor, f.t0
),
f5 AS (
  SELECT f.actor, f.t0, min(e.t) AS t
  FROM f4 f JOIN ev e ON e.actor = f.actor AND e.copy = 1
  WHERE e.event = ? AND e.t > f.t AND date_diff('millisecond', f.t0, e.t) <= ? * 1000
  GROUP BY f.actor, f.t0
)
SELECT 1 AS step, (SELECT count(*) FROM f1) AS actors
UNION ALL SELECT 2, (SELECT count(*) FROM f2)
UNION ALL SELECT 3, (SELECT count(*) FROM f3)
UNION ALL SELECT 4, (SELECT count(*) FROM f4)
UNION ALL SELECT 5, (SELECT count(*) FROM f5)
ORDER BY step
