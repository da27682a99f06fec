-- Domain: workspaces, peers, sessions and their members, messages. Times are epoch milliseconds.
CREATE TABLE workspaces (
  id text PRIMARY KEY,
  settings jsonb NOT NULL DEFAULT '{}',
  created_at bigint NOT NULL
);

CREATE TABLE peers (
  workspace_id text NOT NULL REFERENCES workspaces (id),
  id text NOT NULL,
  observe_me boolean NOT NULL DEFAULT true,
  created_at bigint NOT NULL,
  PRIMARY KEY (workspace_id, id)
);

CREATE TABLE sessions (
  workspace_id text NOT NULL REFERENCES workspaces (id),
  id text NOT NULL,
  settings jsonb NOT NULL DEFAULT '{}',
  message_count integer NOT NULL DEFAULT 0,
  created_at bigint NOT NULL,
  PRIMARY KEY (workspace_id, id)
);

CREATE TABLE session_peers (
  workspace_id text NOT NULL,
  session_id text NOT NULL,
  peer_id text NOT NULL,
  observe_me boolean,
  observe_others boolean NOT NULL DEFAULT false,
  joined_at bigint NOT NULL,
  PRIMARY KEY (workspace_id, session_id, peer_id),
  FOREIGN KEY (workspace_id, session_id) REFERENCES sessions (workspace_id, id),
  FOREIGN KEY (workspace_id, peer_id) REFERENCES peers (workspace_id, id)
);

CREATE TABLE messages (
  id bigserial PRIMARY KEY,
  workspace_id text NOT NULL,
  session_id text NOT NULL,
  seq integer NOT NULL,
  peer_id text NOT NULL,
  content text NOT NULL,
  created_at bigint NOT NULL,
  UNIQUE (workspace_id, session_id, seq),
  FOREIGN KEY (workspace_id, session_id) REFERENCES sessions (workspace_id, id)
);

-- Queue: one row per work unit, carrying its lease, its head task and its task counters.
CREATE TABLE work_units (
  id bigserial PRIMARY KEY,
  unit_key text NOT NULL UNIQUE,
  task_type text NOT NULL,
  workspace_id text NOT NULL,
  session_id text NOT NULL,
  observer_id text,
  sender_id text,
  -- oldest unfinished task; NULL when the unit has nothing left to do
  head_task_id bigint,
  -- the head may start at or after this time (retry backoff)
  available_at bigint NOT NULL DEFAULT 0,
  lease_owner text,
  lease_token bigint NOT NULL DEFAULT 0,
  lease_expires_at bigint,
  pending integer NOT NULL DEFAULT 0,
  running integer NOT NULL DEFAULT 0,
  completed integer NOT NULL DEFAULT 0,
  failed integer NOT NULL DEFAULT 0,
  version bigint NOT NULL DEFAULT 0
) WITH (fillfactor = 70);

CREATE INDEX work_units_by_head ON work_units (head_task_id) WHERE head_task_id IS NOT NULL AND lease_owner IS NULL;
CREATE INDEX work_units_by_lease ON work_units (lease_expires_at) WHERE lease_owner IS NOT NULL;

CREATE TABLE tasks (
  id bigserial PRIMARY KEY,
  unit_id bigint NOT NULL REFERENCES work_units (id),
  message_id bigint,
  state text NOT NULL CHECK (state IN ('pending', 'running', 'succeeded', 'failed')),
  payload jsonb NOT NULL,
  runs integer NOT NULL DEFAULT 0,
  failures integer NOT NULL DEFAULT 0,
  last_error text,
  run_at bigint NOT NULL DEFAULT 0,
  created_at bigint NOT NULL,
  started_at bigint,
  finished_at bigint
) WITH (fillfactor = 70); -- room on each page, so a task's state changes are HOT updates

-- A unit's tasks finish strictly in id order, so its next head is the next id after the current one.
CREATE INDEX tasks_by_unit ON tasks (unit_id, id);

-- One row that readiness checks rewrite, to prove the store can commit a write.
CREATE TABLE store_probe (
  id integer PRIMARY KEY CHECK (id = 1),
  probed_at bigint NOT NULL
);
