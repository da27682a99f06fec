-- Batches: each task's estimated input tokens (from its messages), so a unit's batch can be sized.
ALTER TABLE tasks ADD COLUMN tokens integer NOT NULL DEFAULT 0;

-- Rate limits of task types, shared by every process on the database (src/store/rate-limits.ts):
-- when the next call conforms to each limit, and until when a provider asked to pause (epoch ms).
CREATE TABLE rate_limits (
  task_type text PRIMARY KEY,
  requests_at double precision NOT NULL DEFAULT 0,
  tokens_at double precision NOT NULL DEFAULT 0,
  paused_until double precision NOT NULL DEFAULT 0
);
