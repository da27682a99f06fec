-- Honcho's free-form attributes (docs/honcho.md): `metadata` of workspaces, peers, sessions and
-- messages, and `configuration` of workspaces, peers and sessions, each a JSON object as the client
-- gave it (validated and size-bounded by the API). NULL is the empty object, so a message written
-- without metadata costs nothing more, and adding the columns rewrites no row (PostgreSQL 11 and later).
ALTER TABLE workspaces ADD COLUMN metadata jsonb;
ALTER TABLE workspaces ADD COLUMN configuration jsonb;
ALTER TABLE peers ADD COLUMN metadata jsonb;
ALTER TABLE peers ADD COLUMN configuration jsonb;
ALTER TABLE sessions ADD COLUMN metadata jsonb;
ALTER TABLE sessions ADD COLUMN configuration jsonb;
ALTER TABLE messages ADD COLUMN metadata jsonb;
