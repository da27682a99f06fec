-- Attach's second step (`attach.ts`, after `attach.sql`), in one REPEATABLE READ transaction, so
-- every statement reads one snapshot: what the queue holds in it, counted with the rules of
-- `apply_changes` (a unit's row, and one per observer), less what the triggers had counted in it.
-- A write committed before the snapshot is in both (its rows, and the triggers' counts of them):
-- it cancels out. One committed after is in neither: the triggers count it in the live table.
-- So the differences are exactly the rows the triggers never saw, the queue's earlier ones, and
-- step 3 adds them in. The processed rows Honcho's cleanup deleted before the snapshot (kept aside
-- by the triggers meanwhile) count as if the queue still held them: a completed row stays counted.
-- This reads and locks nothing of Honcho's but its snapshot: Honcho's writes go on meanwhile.
-- (`change_of`'s columns are written out: a function call per row would cost more than the rest.)
DELETE FROM deriver_live_honcho.backfill;

INSERT INTO deriver_live_honcho.backfill (unit_key, work_unit_key, task_type, workspace_id, session_id,
  observer_id, sender_id, per_observer, d_unprocessed, d_completed, d_failed)
WITH queued AS (
  SELECT work_unit_key, task_type, workspace_name, payload, processed, error FROM public.queue
  UNION ALL
  SELECT work_unit_key, task_type, workspace_name, payload, true, error
  FROM deriver_live_honcho.deleted_while_capturing
), rows AS (
  SELECT q.work_unit_key, q.task_type, q.workspace_name, q.payload->>'session_name' AS session_name,
    CASE WHEN q.task_type = 'summary' THEN NULL ELSE q.payload->>'observed' END AS sender,
    CASE
      WHEN q.task_type = 'summary' THEN ARRAY[]::text[]
      WHEN jsonb_typeof(q.payload->'observers') = 'array'
        THEN ARRAY(SELECT jsonb_array_elements_text(q.payload->'observers'))
      WHEN q.payload->>'observer' IS NOT NULL THEN ARRAY[q.payload->>'observer']
      ELSE ARRAY[]::text[]
    END AS observers,
    q.processed, q.error IS NOT NULL AS errored
  FROM queued q
  WHERE q.task_type IN ('representation', 'summary', 'dream') AND q.workspace_name IS NOT NULL
), expanded AS (
  SELECT work_unit_key AS unit_key, work_unit_key, task_type, workspace_name, session_name,
    NULL::text AS observer, sender, false AS per_observer, processed, errored
  FROM rows
  UNION ALL
  SELECT work_unit_key || chr(31) || o.name, work_unit_key, task_type, workspace_name, session_name,
    o.name, sender, true, processed, errored
  FROM rows CROSS JOIN LATERAL unnest(rows.observers) AS o(name)
), summed AS (
  SELECT unit_key, min(work_unit_key) AS work_unit_key, min(task_type) AS task_type,
    min(workspace_name) AS workspace_name, min(session_name) AS session_name, min(observer) AS observer,
    min(sender) AS sender, bool_or(per_observer) AS per_observer,
    count(*) FILTER (WHERE NOT processed)::integer AS unprocessed,
    count(*) FILTER (WHERE processed)::integer AS completed,
    count(*) FILTER (WHERE processed AND errored)::integer AS failed
  FROM expanded GROUP BY unit_key
), differences AS (
  SELECT coalesce(s.unit_key, w.unit_key) AS unit_key,
    coalesce(s.work_unit_key, w.work_unit_key) AS work_unit_key, coalesce(s.task_type, w.task_type) AS task_type,
    coalesce(s.workspace_name, w.workspace_id) AS workspace_id, coalesce(s.session_name, w.session_id) AS session_id,
    coalesce(s.observer, w.observer_id) AS observer_id, coalesce(s.sender, w.sender_id) AS sender_id,
    coalesce(s.per_observer, w.per_observer) AS per_observer,
    coalesce(s.unprocessed, 0) - coalesce(w.unprocessed, 0) AS d_unprocessed,
    coalesce(s.completed, 0) - coalesce(w.completed, 0) AS d_completed,
    coalesce(s.failed, 0) - coalesce(w.failed, 0) AS d_failed
  FROM summed s FULL JOIN deriver_live_honcho.work_units w ON w.unit_key = s.unit_key
)
SELECT * FROM differences WHERE d_unprocessed <> 0 OR d_completed <> 0 OR d_failed <> 0;

DELETE FROM deriver_live_honcho.deleted_while_capturing;
UPDATE deriver_live_honcho.attach_state SET phase = 'applying';
