-- Seeing inside the queue (SPEC section 11).
-- retrying: 1 when the unit's head is a pending task that failed before (waiting for a retry).
-- claimed_through: the last task a claim handed to its worker; pending tasks after it may be
-- cancelled while the unit is leased, the ones up to it are the worker's.
ALTER TABLE work_units ADD COLUMN retrying INTEGER NOT NULL DEFAULT 0;
ALTER TABLE work_units ADD COLUMN claimed_through INTEGER;
UPDATE work_units SET retrying = 1
WHERE lease_owner IS NULL
  AND head_task_id IN (SELECT id FROM tasks WHERE state = 'pending' AND failures > 0);

-- Tasks with an error (failed, or waiting for a retry) are few: failed-task listings and each
-- unit's last error read this index instead of the whole table.
CREATE INDEX tasks_with_error ON tasks (unit_id, id) WHERE last_error IS NOT NULL;
