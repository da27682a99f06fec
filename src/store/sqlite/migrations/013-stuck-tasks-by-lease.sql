-- Stuck tasks are found through the leased units (a running task is always one of its unit's
-- claimed tasks: from the head through claimed_through), not through an index of running tasks,
-- which every start and every finish of a task had to update.
DROP INDEX tasks_running_since;
CREATE INDEX work_units_leased ON work_units (task_type) WHERE lease_owner IS NOT NULL;
