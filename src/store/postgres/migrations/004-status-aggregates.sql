-- Status from indexed aggregates, and committed changes announced from inside their transaction.
--
-- One index per shape of status filter, so that summing a session, a peer or a workspace reads only
-- the units it matches; one for the units with work left (live counts, the oldest pending task).
CREATE INDEX work_units_by_session ON work_units (workspace_id, session_id, observer_id, sender_id);
CREATE INDEX work_units_by_observer ON work_units (workspace_id, observer_id, sender_id);
CREATE INDEX work_units_by_sender ON work_units (workspace_id, sender_id);
CREATE INDEX work_units_live ON work_units (task_type) WHERE head_task_id IS NOT NULL;

-- Every statement that changes unit counters sends, on the schema's channel, what each unit's
-- counters moved by, stamped with the transaction's id: a NOTIFY is delivered if and only if its
-- transaction commits, so a process that dies right after its commit cannot leave others stale.
-- Payload (at most about 7,000 characters; a larger change is sent in several):
--   {"x":"<xid8>","n":<unique number>,"u":[[unit_id,task_type,workspace,session,observer,sender,
--     d_pending,d_running,d_completed,d_failed,d_retrying],...]}
-- `n` keeps two payloads of one transaction distinct (PostgreSQL folds identical ones).
CREATE SEQUENCE unit_change_notices;

CREATE FUNCTION notify_unit_changes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  channel text := left('deriver_changes_' || TG_TABLE_SCHEMA, 63);
  notices regclass := format('%I.unit_change_notices', TG_TABLE_SCHEMA)::regclass;
  head text := '{"x":"' || pg_current_xact_id()::text || '","n":';
  part text := '';
  entry text;
  changes refcursor;
BEGIN
  IF TG_OP = 'INSERT' THEN
    OPEN changes FOR
      SELECT json_build_array(n.id, n.task_type, n.workspace_id, n.session_id, n.observer_id, n.sender_id,
        n.pending, n.running, n.completed, n.failed, n.retrying)::text
      FROM changed_new n
      WHERE n.pending <> 0 OR n.running <> 0 OR n.completed <> 0 OR n.failed <> 0 OR n.retrying <> 0;
  ELSE
    OPEN changes FOR
      SELECT json_build_array(n.id, n.task_type, n.workspace_id, n.session_id, n.observer_id, n.sender_id,
        n.pending - o.pending, n.running - o.running, n.completed - o.completed,
        n.failed - o.failed, n.retrying - o.retrying)::text
      FROM changed_new n JOIN changed_old o USING (id)
      WHERE n.pending <> o.pending OR n.running <> o.running OR n.completed <> o.completed
        OR n.failed <> o.failed OR n.retrying <> o.retrying;
  END IF;
  LOOP
    FETCH changes INTO entry;
    EXIT WHEN NOT FOUND;
    IF part <> '' AND length(part) + length(entry) > 7000 THEN
      PERFORM pg_notify(channel, head || nextval(notices) || ',"u":[' || part || ']}');
      part := '';
    END IF;
    part := CASE WHEN part = '' THEN entry ELSE part || ',' || entry END;
  END LOOP;
  CLOSE changes;
  IF part <> '' THEN
    PERFORM pg_notify(channel, head || nextval(notices) || ',"u":[' || part || ']}');
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER work_units_notify_insert AFTER INSERT ON work_units
  REFERENCING NEW TABLE AS changed_new
  FOR EACH STATEMENT EXECUTE FUNCTION notify_unit_changes();
CREATE TRIGGER work_units_notify_update AFTER UPDATE ON work_units
  REFERENCING OLD TABLE AS changed_old NEW TABLE AS changed_new
  FOR EACH STATEMENT EXECUTE FUNCTION notify_unit_changes();
