-- Status from indexed aggregates (no per-unit state in memory): one index per shape of filter, so
-- summing a session, a peer or a workspace reads only the units it matches.
CREATE INDEX work_units_by_session ON work_units (workspace_id, session_id, observer_id, sender_id);
CREATE INDEX work_units_by_observer ON work_units (workspace_id, observer_id, sender_id);
CREATE INDEX work_units_by_sender ON work_units (workspace_id, sender_id);
