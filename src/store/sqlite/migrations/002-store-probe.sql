-- One row that readiness checks rewrite, to prove the store can commit a write.
CREATE TABLE store_probe (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  probed_at INTEGER NOT NULL
) STRICT;
