-- Domain: workspaces, peers, sessions and their members, messages.
CREATE TABLE workspaces (
  id TEXT PRIMARY KEY,
  settings TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE peers (
  workspace_id TEXT NOT NULL REFERENCES workspaces (id),
  id TEXT NOT NULL,
  observe_me INTEGER NOT NULL DEFAULT 1,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (workspace_id, id)
) STRICT, WITHOUT ROWID;

CREATE TABLE sessions (
  workspace_id TEXT NOT NULL REFERENCES workspaces (id),
  id TEXT NOT NULL,
  settings TEXT NOT NULL DEFAULT '{}',
  message_count INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (workspace_id, id)
) STRICT, WITHOUT ROWID;

CREATE TABLE session_peers (
  workspace_id TEXT NOT NULL,
  session_id TEXT NOT NULL,
  peer_id TEXT NOT NULL,
  observe_me INTEGER,
  observe_others INTEGER NOT NULL DEFAULT 0,
  joined_at INTEGER NOT NULL,
  PRIMARY KEY (workspace_id, session_id, peer_id),
  FOREIGN KEY (workspace_id, session_id) REFERENCES sessions (workspace_id, id),
  FOREIGN KEY (workspace_id, peer_id) REFERENCES peers (workspace_id, id)
) STRICT, WITHOUT ROWID;

CREATE TABLE messages (
  id INTEGER PRIMARY KEY,
  workspace_id TEXT NOT NULL,
  session_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  peer_id TEXT NOT NULL,
  content TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  UNIQUE (workspace_id, session_id, seq),
  FOREIGN KEY (workspace_id, session_id) REFERENCES sessions (workspace_id, id)
) STRICT;

-- Queue: one row per work unit, carrying its lease, its head task and its task counters.
CREATE TABLE work_units (
  id INTEGER PRIMARY KEY,
  unit_key TEXT NOT NULL UNIQUE,
  task_type TEXT NOT NULL,
  workspace_id TEXT NOT NULL,
  session_id TEXT NOT NULL,
  observer_id TEXT,
  sender_id TEXT,
  -- oldest unfinished task; NULL when the unit has nothing left to do
  head_task_id INTEGER,
  -- the head may start at or after this time (retry backoff)
  available_at INTEGER NOT NULL DEFAULT 0,
  lease_owner TEXT,
  lease_token INTEGER NOT NULL DEFAULT 0,
  lease_expires_at INTEGER,
  pending INTEGER NOT NULL DEFAULT 0,
  running INTEGER NOT NULL DEFAULT 0,
  completed INTEGER NOT NULL DEFAULT 0,
  failed INTEGER NOT NULL DEFAULT 0,
  version INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX work_units_by_head ON work_units (head_task_id) WHERE head_task_id IS NOT NULL;
CREATE INDEX work_units_by_lease ON work_units (lease_expires_at) WHERE lease_owner IS NOT NULL;

CREATE TABLE tasks (
  id INTEGER PRIMARY KEY,
  unit_id INTEGER NOT NULL REFERENCES work_units (id),
  message_id INTEGER,
  state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'succeeded', 'failed')),
  payload TEXT NOT NULL,
  runs INTEGER NOT NULL DEFAULT 0,
  failures INTEGER NOT NULL DEFAULT 0,
  last_error TEXT,
  run_at INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  started_at INTEGER,
  finished_at INTEGER
) STRICT;

-- Insert-only: a unit's tasks finish strictly in id order, so its next head is the next id after
-- the current one and no index entry has to move when a task changes state.
CREATE INDEX tasks_by_unit ON tasks (unit_id, id);
