-- The claim scans (queue-plan.ts, READINESS): units ready since they got their head, oldest head
-- first, and units whose wait (a retry's backoff, a batch's fill time) is over. Units still waiting
-- are in neither, so a claim no longer walks past them (20,000 filling batches cost 3.3 ms a claim).
CREATE INDEX work_units_ready_now ON work_units (head_task_id) WHERE head_task_id IS NOT NULL AND available_at = 0;
CREATE INDEX work_units_due ON work_units (available_at) WHERE head_task_id IS NOT NULL AND available_at > 0;
