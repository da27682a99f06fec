-- messages.derived (docs/webhooks.md): an addMessages call made with notifyWhenDerived is a watch;
-- its tasks carry its id, and the transaction that finishes its last task marks it derived and
-- writes the event.
CREATE TABLE derivation_watches (
  id bigserial PRIMARY KEY,
  workspace_id text NOT NULL,
  session_id text NOT NULL,
  -- the call's message ids, a JSON array of strings
  message_ids text NOT NULL,
  created_at bigint NOT NULL,
  derived_at bigint
);
ALTER TABLE tasks ADD COLUMN watch_id bigint;
CREATE INDEX tasks_by_watch ON tasks (watch_id) WHERE watch_id IS NOT NULL;
