-- Deriver Live attached to a running Honcho (docs/honcho-attach.md): what `deriver-live honcho
-- attach` installs, all in the schema `deriver_live_honcho`; nothing in Honcho's tables changes
-- but the five triggers named `deriver_live_*` on `queue` and `active_queue_sessions`, which
-- `detach` drops with the schema. This file is the first of attach's three steps (`attach.ts`):
-- one short transaction that creates the schema and the triggers (creating a trigger waits for
-- the writes in flight and holds new ones only until this commits), so every write from then on is
-- counted by the triggers. The second (`backfill.sql`) counts what the queue held before, from one
-- snapshot and without locking anything; the third (`APPLY_CHUNK` in `attach.ts`) adds that in,
-- and the counts are exact from then on (`attach_state.phase` = 'ready').
--
-- `work_units` holds one row per Honcho work unit (`work_unit_key`) of the user-facing task types
-- (representation, summary, dream), and one more per (unit, observer) for the tasks that name
-- observers (`per_observer`): a representation row counts once for the unit and once for each name
-- in its `observers`. Status sums the unit rows for a filter without an observer and the observer
-- rows for one with it, so AND holds and nothing is counted twice. `unprocessed` rows of a unit
-- are in progress while Honcho holds the unit (`held`: a row in `active_queue_sessions`), pending
-- otherwise; `completed` counts rows processed since attach, errored ones included (`failed`), and
-- is kept when Honcho's cleanup deletes processed rows: a count never goes down.
--
-- Every statement that moves counters sends the deltas on `deriver_changes_deriver_live_honcho`
-- from inside Honcho's transaction (the same payload as Deriver Live's own store), so a rollback
-- sends nothing and a commit is heard by every attached instance.
CREATE SCHEMA deriver_live_honcho;

-- Where attach is: 'capturing' (the triggers count; the queue's earlier rows are not counted yet),
-- 'applying' (`backfill` holds those earlier rows' counts, being added in) or 'ready'. Instances
-- serve only a 'ready' Honcho; the triggers write webhook events only then.
CREATE TABLE deriver_live_honcho.attach_state (
  one boolean PRIMARY KEY DEFAULT true CHECK (one),
  phase text NOT NULL CHECK (phase IN ('capturing', 'applying', 'ready'))
);
INSERT INTO deriver_live_honcho.attach_state (phase) VALUES ('capturing');

CREATE TABLE deriver_live_honcho.work_units (
  id bigserial PRIMARY KEY,
  unit_key text NOT NULL UNIQUE,
  work_unit_key text NOT NULL,
  task_type text NOT NULL,
  workspace_id text NOT NULL,
  session_id text,
  observer_id text,
  sender_id text,
  per_observer boolean NOT NULL,
  held boolean NOT NULL DEFAULT false,
  unprocessed integer NOT NULL DEFAULT 0,
  completed integer NOT NULL DEFAULT 0,
  failed integer NOT NULL DEFAULT 0,
  pending integer GENERATED ALWAYS AS (CASE WHEN held THEN 0 ELSE unprocessed END) STORED,
  running integer GENERATED ALWAYS AS (CASE WHEN held THEN unprocessed ELSE 0 END) STORED,
  retrying integer NOT NULL DEFAULT 0
);

-- A statement's changes as counter deltas per unit row (the rows `apply_changes` expands a queue
-- row into), as `backfill.sql` computes them, until step 3 (`attach.ts`) has added them in.
CREATE TABLE deriver_live_honcho.backfill (
  unit_key text PRIMARY KEY,
  work_unit_key text NOT NULL,
  task_type text NOT NULL,
  workspace_id text NOT NULL,
  session_id text,
  observer_id text,
  sender_id text,
  per_observer boolean NOT NULL,
  d_unprocessed integer NOT NULL,
  d_completed integer NOT NULL,
  d_failed integer NOT NULL
);

-- Processed rows Honcho's cleanup deleted while attach had not counted the queue yet (phase
-- 'capturing'): `backfill.sql` counts those its snapshot no longer holds as if they were there, so a
-- row processed before attach stays completed, as one the triggers saw does.
CREATE TABLE deriver_live_honcho.deleted_while_capturing (
  work_unit_key text,
  task_type text,
  workspace_name text,
  payload jsonb,
  error text
);

CREATE INDEX work_units_by_key ON deriver_live_honcho.work_units (work_unit_key);
-- A workspace's status without an observer sums the units' own rows: read from this index alone
-- (an index-only scan once autovacuum has marked the pages all-visible), not from the table.
CREATE INDEX work_units_whole ON deriver_live_honcho.work_units (workspace_id, session_id)
  INCLUDE (pending, running, completed, failed, retrying) WHERE per_observer = false;
CREATE INDEX work_units_by_session ON deriver_live_honcho.work_units (workspace_id, session_id, observer_id, sender_id);
CREATE INDEX work_units_by_observer ON deriver_live_honcho.work_units (workspace_id, observer_id, sender_id);
CREATE INDEX work_units_by_sender ON deriver_live_honcho.work_units (workspace_id, sender_id);

-- A workspace's totals (its units' own rows: no observer's share), so its status without a filter
-- reads a few rows rather than each of its units. Every statement that moves counters adds one row
-- per workspace to `workspace_changes` (an insert: no Honcho write waits on a row another holds);
-- `fold_workspace_changes` moves them into `workspace_totals`, which only it writes (attached
-- instances call it once a second while Honcho writes). A workspace's status is its totals row plus its
-- change rows, read in one statement: a fold commits the rows' removal and their addition together.
CREATE TABLE deriver_live_honcho.workspace_totals (
  workspace_id text PRIMARY KEY,
  pending bigint NOT NULL,
  running bigint NOT NULL,
  completed bigint NOT NULL,
  failed bigint NOT NULL
);
CREATE TABLE deriver_live_honcho.workspace_changes (
  workspace_id text NOT NULL,
  pending bigint NOT NULL,
  running bigint NOT NULL,
  completed bigint NOT NULL,
  failed bigint NOT NULL
);
CREATE INDEX workspace_changes_by_workspace ON deriver_live_honcho.workspace_changes (workspace_id);

-- Moves up to `most` change rows into the totals, in the caller's transaction; returns how many
-- (fewer than `most`: none are left). One fold at a time: while another runs this one does nothing
-- (it returns 0) rather than wait on it.
CREATE FUNCTION deriver_live_honcho.fold_workspace_changes(most integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  folded integer;
BEGIN
  IF NOT pg_try_advisory_xact_lock(hashtext('deriver_live_honcho.fold_workspace_changes')) THEN
    RETURN 0;
  END IF;
  WITH moved AS (
    DELETE FROM deriver_live_honcho.workspace_changes WHERE ctid = ANY (ARRAY(
      SELECT ctid FROM deriver_live_honcho.workspace_changes LIMIT most))
    RETURNING *
  ), added AS (
    INSERT INTO deriver_live_honcho.workspace_totals AS t (workspace_id, pending, running, completed, failed)
    SELECT workspace_id, sum(pending), sum(running), sum(completed), sum(failed)
    FROM moved GROUP BY workspace_id ORDER BY workspace_id
    ON CONFLICT (workspace_id) DO UPDATE SET
      pending = t.pending + excluded.pending,
      running = t.running + excluded.running,
      completed = t.completed + excluded.completed,
      failed = t.failed + excluded.failed
  )
  SELECT count(*) INTO folded FROM moved;
  RETURN folded;
END
$$;

-- The webhook events Honcho's commits cause (see `apply_changes`), until an attached instance
-- moves them into its own outbox (`HonchoSource.takeEvents`).
CREATE TABLE deriver_live_honcho.events (
  id bigserial PRIMARY KEY,
  type text NOT NULL,
  workspace_id text NOT NULL,
  session_id text,
  task_type text,
  sender_id text,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE SEQUENCE deriver_live_honcho.unit_change_notices;

-- One queue row as the counters see it: +1 for a row that now is, -1 for one that was.
CREATE TYPE deriver_live_honcho.change AS (
  sign integer, work_unit_key text, task_type text, workspace_name text, session_name text,
  sender text, observers text[], processed boolean, errored boolean
);

CREATE FUNCTION deriver_live_honcho.change_of(sign integer, q public.queue) RETURNS deriver_live_honcho.change
LANGUAGE sql IMMUTABLE AS $$
  SELECT ROW(sign, q.work_unit_key, q.task_type, q.workspace_name, q.payload->>'session_name',
    CASE WHEN q.task_type = 'summary' THEN NULL ELSE q.payload->>'observed' END,
    CASE
      WHEN q.task_type = 'summary' THEN ARRAY[]::text[]
      WHEN jsonb_typeof(q.payload->'observers') = 'array'
        THEN ARRAY(SELECT jsonb_array_elements_text(q.payload->'observers'))
      WHEN q.payload->>'observer' IS NOT NULL THEN ARRAY[q.payload->>'observer']
      ELSE ARRAY[]::text[]
    END,
    q.processed, q.error IS NOT NULL)::deriver_live_honcho.change
$$;

-- A statement's changes as counter deltas per unit row (a unit's row, and one per observer), and
-- the events they cause, written in the same transaction: `queue.empty` for each unit whose last
-- unprocessed row went, and `session.idle` for each session that has none left. Whether a session
-- is idle is decided under a per-session advisory lock taken in a statement of its own, so two
-- transactions draining a session's last two units at once cannot both see the other's unit as
-- busy (READ COMMITTED): the second to take the lock sees the first's commit.
-- (plpgsql, not sql: its statements are planned once per connection, not at every call; and with a
-- generic plan: left to choose, PostgreSQL planned the statement again at every call for its array
-- argument, which was a third of a one-row UPDATE's time with the triggers: 1.26 -> 0.89 ms p50
-- over 200 one-row UPDATEs on one connection, 0.30 ms with no trigger.)
CREATE FUNCTION deriver_live_honcho.apply_changes(changed deriver_live_honcho.change[]) RETURNS void
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  drained_workspaces text[];
  drained_sessions text[];
BEGIN
  WITH rows AS (
    SELECT * FROM unnest(changed)
    WHERE task_type IN ('representation', 'summary', 'dream') AND workspace_name IS NOT NULL
  ), expanded AS (
    SELECT work_unit_key AS unit_key, work_unit_key, task_type, workspace_name, session_name,
      NULL::text AS observer, sender, false AS per_observer, sign, processed, errored
    FROM rows
    UNION ALL
    SELECT work_unit_key || chr(31) || o.name, work_unit_key, task_type, workspace_name, session_name,
      o.name, sender, true, sign, processed, errored
    FROM rows CROSS JOIN LATERAL unnest(rows.observers) AS o(name)
  ), summed AS (
    SELECT unit_key, min(work_unit_key) AS work_unit_key, min(task_type) AS task_type,
      min(workspace_name) AS workspace_name, min(session_name) AS session_name, min(observer) AS observer,
      min(sender) AS sender, bool_or(per_observer) AS per_observer,
      sum(CASE WHEN processed THEN 0 ELSE sign END)::integer AS d_unprocessed,
      sum(CASE WHEN processed THEN sign ELSE 0 END)::integer AS d_completed,
      sum(CASE WHEN processed AND errored THEN sign ELSE 0 END)::integer AS d_failed
    FROM expanded GROUP BY unit_key
  ), upserted AS (
    INSERT INTO deriver_live_honcho.work_units AS u (unit_key, work_unit_key, task_type, workspace_id,
      session_id, observer_id, sender_id, per_observer, held, unprocessed, completed, failed)
    SELECT s.unit_key, s.work_unit_key, s.task_type, s.workspace_name, s.session_name, s.observer, s.sender,
      s.per_observer,
      EXISTS (SELECT 1 FROM public.active_queue_sessions a WHERE a.work_unit_key = s.work_unit_key),
      s.d_unprocessed, s.d_completed, s.d_failed
    FROM summed s
    WHERE s.d_unprocessed <> 0 OR s.d_completed <> 0 OR s.d_failed <> 0
    ORDER BY s.unit_key
    ON CONFLICT (unit_key) DO UPDATE SET
      unprocessed = u.unprocessed + excluded.unprocessed,
      completed = u.completed + excluded.completed,
      failed = u.failed + excluded.failed
    RETURNING u.unit_key, u.task_type, u.workspace_id, u.session_id, u.sender_id, u.per_observer, u.unprocessed
  ), emptied AS (
    -- Until attach is done, a unit's count lacks its earlier rows: no event can be told yet.
    INSERT INTO deriver_live_honcho.events (type, workspace_id, session_id, task_type, sender_id)
    SELECT 'queue.empty', up.workspace_id, up.session_id, up.task_type, up.sender_id
    FROM upserted up JOIN summed s USING (unit_key)
    WHERE NOT up.per_observer AND up.unprocessed = 0 AND s.d_unprocessed < 0
      AND (SELECT phase FROM deriver_live_honcho.attach_state) = 'ready'
    RETURNING workspace_id, session_id
  )
  SELECT array_agg(d.workspace_id ORDER BY d.workspace_id, d.session_id),
    array_agg(d.session_id ORDER BY d.workspace_id, d.session_id)
  INTO drained_workspaces, drained_sessions
  FROM (SELECT DISTINCT workspace_id, session_id FROM emptied WHERE session_id IS NOT NULL) d;
  FOR i IN 1 .. coalesce(array_length(drained_sessions, 1), 0) LOOP
    PERFORM pg_advisory_xact_lock(hashtext('deriver_live_honcho'),
      hashtext(drained_workspaces[i] || chr(31) || drained_sessions[i]));
    INSERT INTO deriver_live_honcho.events (type, workspace_id, session_id)
    SELECT 'session.idle', drained_workspaces[i], drained_sessions[i]
    WHERE NOT EXISTS (
      SELECT 1 FROM deriver_live_honcho.work_units w
      WHERE w.workspace_id = drained_workspaces[i] AND w.session_id = drained_sessions[i]
        AND NOT w.per_observer AND w.unprocessed > 0);
  END LOOP;
END
$$;

CREATE FUNCTION deriver_live_honcho.queue_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM deriver_live_honcho.apply_changes(ARRAY(
    SELECT deriver_live_honcho.change_of(1, n) FROM new_rows n
    WHERE n.task_type IN ('representation', 'summary', 'dream')));
  RETURN NULL;
END
$$;

-- An updated row counts -1 as it was and +1 as it is: a row whose `processed` and error did not
-- change nets to nothing (no join of the old and new rows needed).
CREATE FUNCTION deriver_live_honcho.queue_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM deriver_live_honcho.apply_changes(ARRAY(
    SELECT deriver_live_honcho.change_of(-1, o) FROM old_rows o
    WHERE o.task_type IN ('representation', 'summary', 'dream')
    UNION ALL
    SELECT deriver_live_honcho.change_of(1, n) FROM new_rows n
    WHERE n.task_type IN ('representation', 'summary', 'dream')));
  RETURN NULL;
END
$$;

-- Deleted rows: an unprocessed one leaves the counts; a processed one (Honcho's cleanup) stays
-- counted as completed (and is kept aside until attach has counted the queue).
CREATE FUNCTION deriver_live_honcho.queue_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT phase FROM deriver_live_honcho.attach_state) = 'capturing' THEN
    INSERT INTO deriver_live_honcho.deleted_while_capturing (work_unit_key, task_type, workspace_name, payload, error)
    SELECT o.work_unit_key, o.task_type, o.workspace_name, o.payload, o.error FROM old_rows o
    WHERE o.processed AND o.task_type IN ('representation', 'summary', 'dream');
  END IF;
  PERFORM deriver_live_honcho.apply_changes(ARRAY(
    SELECT deriver_live_honcho.change_of(-1, o) FROM old_rows o
    WHERE NOT o.processed AND o.task_type IN ('representation', 'summary', 'dream')));
  RETURN NULL;
END
$$;

CREATE FUNCTION deriver_live_honcho.held_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    UPDATE deriver_live_honcho.work_units u SET held = true
    WHERE u.work_unit_key IN (SELECT work_unit_key FROM new_rows) AND NOT u.held;
  ELSE
    UPDATE deriver_live_honcho.work_units u SET held = false
    WHERE u.work_unit_key IN (SELECT work_unit_key FROM old_rows) AND u.held
      AND NOT EXISTS (SELECT 1 FROM public.active_queue_sessions a WHERE a.work_unit_key = u.work_unit_key);
  END IF;
  RETURN NULL;
END
$$;

-- Deriver Live's own change notices, from `work_units` (as its store's migration 004 sends them),
-- and each workspace's change row (`workspace_changes`).
CREATE FUNCTION deriver_live_honcho.notify_unit_changes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  channel text := 'deriver_changes_deriver_live_honcho';
  head text := '{"x":"' || pg_current_xact_id()::text || '","n":';
  part text := '';
  entry text;
  changes refcursor;
BEGIN
  IF TG_OP = 'INSERT' THEN
    OPEN changes FOR
      SELECT json_build_array(n.id, n.task_type, n.workspace_id, n.session_id, n.observer_id, n.sender_id,
        n.pending, n.running, n.completed, n.failed, n.retrying, n.per_observer)::text
      FROM changed_new n WHERE n.pending <> 0 OR n.running <> 0 OR n.completed <> 0 OR n.failed <> 0;
  ELSE
    OPEN changes FOR
      SELECT json_build_array(n.id, n.task_type, n.workspace_id, n.session_id, n.observer_id, n.sender_id,
        n.pending - o.pending, n.running - o.running, n.completed - o.completed, n.failed - o.failed, 0,
        n.per_observer)::text
      FROM changed_new n JOIN changed_old o USING (id)
      WHERE n.pending <> o.pending OR n.running <> o.running OR n.completed <> o.completed OR n.failed <> o.failed;
  END IF;
  IF TG_OP = 'INSERT' THEN
    INSERT INTO deriver_live_honcho.workspace_changes (workspace_id, pending, running, completed, failed)
    SELECT n.workspace_id, sum(n.pending), sum(n.running), sum(n.completed), sum(n.failed)
    FROM changed_new n WHERE NOT n.per_observer GROUP BY n.workspace_id
    HAVING sum(n.pending) <> 0 OR sum(n.running) <> 0 OR sum(n.completed) <> 0 OR sum(n.failed) <> 0;
  ELSE
    INSERT INTO deriver_live_honcho.workspace_changes (workspace_id, pending, running, completed, failed)
    SELECT n.workspace_id, sum(n.pending - o.pending), sum(n.running - o.running),
      sum(n.completed - o.completed), sum(n.failed - o.failed)
    FROM changed_new n JOIN changed_old o USING (id) WHERE NOT n.per_observer GROUP BY n.workspace_id
    HAVING sum(n.pending - o.pending) <> 0 OR sum(n.running - o.running) <> 0
      OR sum(n.completed - o.completed) <> 0 OR sum(n.failed - o.failed) <> 0;
  END IF;
  LOOP
    FETCH changes INTO entry;
    EXIT WHEN NOT FOUND;
    IF part <> '' AND length(part) + length(entry) > 7000 THEN
      PERFORM pg_notify(channel, head || nextval('deriver_live_honcho.unit_change_notices') || ',"u":[' || part || ']}');
      part := '';
    END IF;
    part := CASE WHEN part = '' THEN entry ELSE part || ',' || entry END;
  END LOOP;
  CLOSE changes;
  IF part <> '' THEN
    PERFORM pg_notify(channel, head || nextval('deriver_live_honcho.unit_change_notices') || ',"u":[' || part || ']}');
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER work_units_notify_insert AFTER INSERT ON deriver_live_honcho.work_units
  REFERENCING NEW TABLE AS changed_new FOR EACH STATEMENT EXECUTE FUNCTION deriver_live_honcho.notify_unit_changes();
CREATE TRIGGER work_units_notify_update AFTER UPDATE ON deriver_live_honcho.work_units
  REFERENCING OLD TABLE AS changed_old NEW TABLE AS changed_new
  FOR EACH STATEMENT EXECUTE FUNCTION deriver_live_honcho.notify_unit_changes();

-- Honcho's tables: the five triggers (these hold writes to `queue` and `active_queue_sessions` until
-- this transaction commits).
CREATE TRIGGER deriver_live_queue_insert AFTER INSERT ON public.queue
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION deriver_live_honcho.queue_inserted();
CREATE TRIGGER deriver_live_queue_update AFTER UPDATE ON public.queue
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION deriver_live_honcho.queue_updated();
CREATE TRIGGER deriver_live_queue_delete AFTER DELETE ON public.queue
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION deriver_live_honcho.queue_deleted();
CREATE TRIGGER deriver_live_held_insert AFTER INSERT ON public.active_queue_sessions
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION deriver_live_honcho.held_changed();
CREATE TRIGGER deriver_live_held_delete AFTER DELETE ON public.active_queue_sessions
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION deriver_live_honcho.held_changed();

