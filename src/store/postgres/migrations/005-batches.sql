-- Batches: each task's estimated input tokens (from its messages), so a unit's batch can be sized.
ALTER TABLE tasks ADD COLUMN tokens integer NOT NULL DEFAULT 0;
