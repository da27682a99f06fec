-- Durable webhooks (docs/webhooks.md): endpoints per workspace, and an outbox of deliveries written
-- in the same transaction as the change that causes each event.
CREATE TABLE webhook_endpoints (
  id bigserial PRIMARY KEY,
  workspace_id text NOT NULL,
  url text NOT NULL,
  -- the event types it receives, comma-separated with a comma at each end: ",queue.empty,task.failed,"
  events text NOT NULL,
  secret text NOT NULL,
  created_at bigint NOT NULL
);
CREATE INDEX webhook_endpoints_by_workspace ON webhook_endpoints (workspace_id);

CREATE TABLE webhook_deliveries (
  id bigserial PRIMARY KEY,
  endpoint_id bigint NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
  type text NOT NULL,
  payload text NOT NULL,
  created_at bigint NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  next_attempt_at bigint NOT NULL,
  -- pending, delivered, or failed (gave up after a day)
  state text NOT NULL DEFAULT 'pending',
  last_error text,
  delivered_at bigint,
  lease_until bigint
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id);
