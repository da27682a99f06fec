-- Stuck tasks: the running tasks by when they started (few rows: at most the workers' concurrency).
CREATE INDEX tasks_running_since ON tasks (started_at) WHERE state = 'running';
