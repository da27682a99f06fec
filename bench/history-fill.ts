/**
 * Synthetic history, written straight into a migrated store with bulk SQL: the shape of a long-lived
 * deployment. Units are spread over 1,000 workspaces; a session has 3 peers and 9 work units (the
 * 8 representation pairs of its peers but one, and a summary); every unit is finished (5 tasks
 * completed, their rows pruned), except the first `active` units, which each have one pending task
 * (a row, the unit's head) waiting to run.
 *
 * Used by `bench:history` and by the start-up test (`test/history.test.ts`).
 */
import Database from 'better-sqlite3';
import pg from 'pg';
import { openStore } from '../src/store/open-store.ts';

export interface HistoryShape {
  /** Work units in all (rounded up to whole sessions of 9). */
  readonly units: number;
  /** Of those, units with one pending task. @default 0 */
  readonly active?: number;
}

export const WORKSPACES = 1_000;
export const UNITS_PER_SESSION = 9;

/** Names of the synthetic rows, for queries against them. */
export const workspaceOf = (session: number) => `w${session % WORKSPACES}`;
export const sessionOf = (session: number) => `s${session}`;
export const peerOf = (session: number, p: number) => `p${(session + p * 7) % 5_000}`;

/** Creates (migrates) the store at `url` and fills it; returns how many sessions it wrote. */
export async function fillHistory(url: string, shape: HistoryShape): Promise<number> {
  await (await openStore(url)).close(); // tables and indexes, by the store's own migrations
  const sessions = Math.ceil(shape.units / UNITS_PER_SESSION);
  const active = Math.min(shape.active ?? 0, sessions * UNITS_PER_SESSION);
  if (url.startsWith('file:')) fillSqlite(url.slice('file:'.length), sessions, active);
  else await fillPostgres(url, sessions, active);
  return sessions;
}

// The SQL of both stores builds the same rows from a series of session numbers `s` and unit
// numbers `j` (0-8) with the expressions below.
const ws = (s: string) => `'w' || (${s} % ${WORKSPACES})`;
const peer = (s: string, p: string) => `'p' || ((${s} + (${p}) * 7) % 5000)`;
const observer = (s: string, j: string) => `CASE WHEN ${j} = 8 THEN NULL ELSE ${peer(s, `${j} / 3`)} END`;
const sender = (s: string, j: string) => `CASE WHEN ${j} = 8 THEN NULL ELSE ${peer(s, `${j} % 3`)} END`;
const unitKey = (s: string, j: string) =>
  `(CASE WHEN ${j} = 8 THEN 'summary' ELSE 'representation' END) || '/' || ${ws(s)} || '/s' || ${s} || '/' || coalesce(${observer(s, j)}, '') || '/' || coalesce(${sender(s, j)}, '')`;
const unitColumns = (s: string, j: string) =>
  `${unitKey(s, j)}, CASE WHEN ${j} = 8 THEN 'summary' ELSE 'representation' END, ${ws(s)}, 's' || ${s}, ${observer(s, j)}, ${sender(s, j)}`;

function fillSqlite(path: string, sessions: number, active: number): void {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = OFF');
  const series = (n: number) =>
    `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ${n - 1})`;
  db.transaction(() => {
    db.exec(
      `${series(WORKSPACES)} INSERT OR IGNORE INTO workspaces (id, created_at) SELECT 'w' || i, 0 FROM n`,
    );
    db.exec(`${series(sessions)} INSERT OR IGNORE INTO peers (workspace_id, id, created_at)
      SELECT ${ws('i')}, ${peer('i', 'p.k')}, 0 FROM n, (SELECT 0 AS k UNION ALL SELECT 1 UNION ALL SELECT 2) p`);
    db.exec(`${series(sessions)} INSERT INTO sessions (workspace_id, id, message_count, created_at)
      SELECT ${ws('i')}, 's' || i, 25, 0 FROM n`);
    db.exec(`${series(sessions)} INSERT INTO session_peers (workspace_id, session_id, peer_id, observe_others, joined_at)
      SELECT ${ws('i')}, 's' || i, ${peer('i', 'p.k')}, 1, 0 FROM n, (SELECT 0 AS k UNION ALL SELECT 1 UNION ALL SELECT 2) p`);
    db.exec(`${series(sessions * UNITS_PER_SESSION)}
      INSERT INTO work_units (unit_key, task_type, workspace_id, session_id, observer_id, sender_id, completed, version)
      SELECT ${unitColumns('(i / 9)', '(i % 9)')}, 5, 5 FROM n`);
    if (active > 0) {
      db.exec(`INSERT INTO tasks (unit_id, message_id, state, payload, created_at)
        SELECT id, NULL, 'pending', '{"seq":1}', 0 FROM work_units WHERE id <= ${active} ORDER BY id`);
      db.exec(`UPDATE work_units SET pending = 1,
        head_task_id = (SELECT t.id FROM tasks t WHERE t.unit_id = work_units.id) WHERE id <= ${active}`);
    }
  })();
  db.close();
}

async function fillPostgres(url: string, sessions: number, active: number): Promise<void> {
  const parsed = new URL(url);
  const schema = parsed.searchParams.get('schema') ?? 'public';
  parsed.searchParams.delete('schema');
  const client = new pg.Client({ connectionString: parsed.toString() });
  await client.connect();
  try {
    await client.query(`SET search_path = "${schema}"`);
    await client.query('BEGIN');
    // Bulk history is not a change anybody listens to: no notification per statement.
    await client.query('ALTER TABLE work_units DISABLE TRIGGER USER');
    await client.query(
      `INSERT INTO workspaces (id, created_at) SELECT 'w' || i, 0 FROM generate_series(0, ${WORKSPACES - 1}) i ON CONFLICT DO NOTHING`,
    );
    await client.query(`INSERT INTO peers (workspace_id, id, created_at)
      SELECT DISTINCT ${ws('s')}, ${peer('s', 'k')}, 0 FROM generate_series(0, ${Math.min(sessions, 5_000 * WORKSPACES) - 1}) s, generate_series(0, 2) k
      ON CONFLICT DO NOTHING`);
    await client.query(`INSERT INTO sessions (workspace_id, id, message_count, created_at)
      SELECT ${ws('s')}, 's' || s, 25, 0 FROM generate_series(0, ${sessions - 1}) s`);
    await client.query(`INSERT INTO session_peers (workspace_id, session_id, peer_id, observe_others, joined_at)
      SELECT ${ws('s')}, 's' || s, ${peer('s', 'k')}, true, 0 FROM generate_series(0, ${sessions - 1}) s, generate_series(0, 2) k`);
    await client.query(`INSERT INTO work_units (unit_key, task_type, workspace_id, session_id, observer_id, sender_id, completed, version)
      SELECT ${unitColumns('(i / 9)', '(i % 9)')}, 5, 5 FROM generate_series(0, ${sessions * UNITS_PER_SESSION - 1}) i`);
    if (active > 0) {
      await client.query(`INSERT INTO tasks (unit_id, message_id, state, payload, created_at)
        SELECT id, NULL, 'pending', '{"seq":1}', 0 FROM work_units WHERE id <= ${active} ORDER BY id`);
      await client.query(`UPDATE work_units u SET pending = 1, head_task_id = t.id
        FROM tasks t WHERE t.unit_id = u.id AND u.id <= ${active}`);
    }
    await client.query('ALTER TABLE work_units ENABLE TRIGGER USER');
    await client.query('COMMIT');
    await client.query('ANALYZE');
  } finally {
    await client.end();
  }
}
