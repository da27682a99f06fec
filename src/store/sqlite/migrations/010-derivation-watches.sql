-- messages.derived (docs/webhooks.md): an addMessages call made with notifyWhenDerived is a watch;
-- its tasks carry its id, and the transaction that finishes its last task marks it derived and
-- writes the event.
CREATE TABLE derivation_watches (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  workspace_id TEXT NOT NULL,
  session_id TEXT NOT NULL,
  -- the call's message ids, a JSON array of strings
  message_ids TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  derived_at INTEGER
);
ALTER TABLE tasks ADD COLUMN watch_id INTEGER;
CREATE INDEX tasks_by_watch ON tasks (watch_id) WHERE watch_id IS NOT NULL;
-- 1 while the unit may hold tasks of a watch (set when they are added, cleared when it drains): a
-- report looks up its finished tasks' watches only then (RETURNING on every finish costs ~10 %).
ALTER TABLE work_units ADD COLUMN watching INTEGER NOT NULL DEFAULT 0;
