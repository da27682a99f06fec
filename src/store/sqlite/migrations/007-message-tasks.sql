-- Per-message derivation: the tasks a message created, found by the message (docs/api.md).
CREATE INDEX tasks_by_message ON tasks (message_id) WHERE message_id IS NOT NULL;
