-- Poison tasks: how often a task's run was cut short by the crash of the process running it.
ALTER TABLE tasks ADD COLUMN interruptions INTEGER NOT NULL DEFAULT 0;
