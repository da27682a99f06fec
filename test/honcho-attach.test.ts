/**
 * A running Honcho, attached: a simulated Honcho (its tables, and a writer process doing what its
 * API and deriver do) on PostgreSQL, 10,000 sessions; `deriver-live honcho attach` through the real
 * command; a server with `HONCHO_DATABASE_URL`. The status served equals, for every filter, the
 * same aggregate run over Honcho's own rows in SQL (with Honcho's definitions and AND filters); a
 * subscriber is pushed the deriver's progress and its `untilIdle` wait ends exact; the writer is
 * SIGKILLed while it holds units; a transaction that rolls back is never counted; Honcho's cleanup
 * of processed rows changes no count; `detach` leaves nothing behind.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { createClient } from 'graphql-ws';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import WebSocket from 'ws';
import { honchoCommand } from '../src/cli/honcho.ts';
import { attachHoncho } from '../src/honcho/attach.ts';
import { startTestServer, type TestServer } from './server-helpers.ts';
import { launchChromium } from './support/browser.ts';
import { printed } from './support/processes.ts';

const WRITER = fileURLToPath(new URL('./fixtures/honcho/writer.ts', import.meta.url));
const SCHEMA = readFileSync(new URL('./fixtures/honcho/schema.sql', import.meta.url), 'utf8');
const WS = 'acme';
const SESSIONS = 10_000;

let url: string;
let admin: pg.Client;
let honcho: pg.Client;
let server: TestServer;
const children: ChildProcess[] = [];

/** A database of its own on the run's PostgreSQL, with Honcho's tables. */
beforeAll(async () => {
  const serverUrl = inject('postgresUrl');
  const name = `honcho_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const at = new URL(serverUrl);
  at.pathname = `/${name}`;
  url = at.toString();
  honcho = new pg.Client({ connectionString: url });
  await honcho.connect();
  await honcho.query(SCHEMA);
}, 60_000);

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await server?.close();
  await honcho?.end();
  const name = new URL(url).pathname.slice(1);
  await admin?.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin?.end();
});

function writer(options: Record<string, unknown>): ChildProcess {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', WRITER, JSON.stringify({ url, workspace: WS, ...options })],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  children.push(child);
  return child;
}
const finished = (child: ChildProcess) =>
  new Promise<void>((resolve, reject) =>
    child.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`the writer exited with ${code}`)),
    ),
  );

interface Counts {
  totalWorkUnits: number;
  completedWorkUnits: number;
  inProgressWorkUnits: number;
  pendingWorkUnits: number;
  /** The part of completed that Honcho marked with an error. */
  failedWorkUnits: number;
}
interface Filter {
  sessionId?: string;
  observerId?: string;
  senderId?: string;
}

/** Honcho's definitions over its own rows, with AND filters and each observer of a row counted. */
async function inSql(filter: Filter, workspace = WS): Promise<Counts> {
  const { rows } = await honcho.query<{
    completed: string;
    in_progress: string;
    pending: string;
    failed: string;
  }>(
    `SELECT count(*) FILTER (WHERE q.processed) AS completed,
       count(*) FILTER (WHERE q.processed AND q.error IS NOT NULL) AS failed,
       count(*) FILTER (WHERE NOT q.processed AND a.id IS NOT NULL) AS in_progress,
       count(*) FILTER (WHERE NOT q.processed AND a.id IS NULL) AS pending
     FROM queue q LEFT JOIN active_queue_sessions a USING (work_unit_key)
     WHERE q.workspace_name = $1 AND q.task_type IN ('representation', 'summary', 'dream')
       AND ($2::text IS NULL OR q.payload->>'session_name' = $2)
       AND ($3::text IS NULL OR (q.task_type <> 'summary' AND q.payload->'observers' ? $3))
       AND ($4::text IS NULL OR (q.task_type <> 'summary' AND q.payload->>'observed' = $4))`,
    [workspace, filter.sessionId ?? null, filter.observerId ?? null, filter.senderId ?? null],
  );
  const r = rows[0]!;
  const [completed, inProgress, pending] = [Number(r.completed), Number(r.in_progress), Number(r.pending)];
  return {
    totalWorkUnits: completed + inProgress + pending,
    completedWorkUnits: completed,
    inProgressWorkUnits: inProgress,
    pendingWorkUnits: pending,
    failedWorkUnits: Number(r.failed),
  };
}

const COUNTS = 'totalWorkUnits completedWorkUnits inProgressWorkUnits pendingWorkUnits failedWorkUnits';
async function served(filter: Filter, workspace = WS): Promise<Counts> {
  const result = await server.http<{ deriverStatus: Counts }>(
    `query($w: ID, $s: ID, $o: ID, $p: ID) { deriverStatus(workspaceId: $w, sessionId: $s, observerId: $o, senderId: $p) { ${COUNTS} } }`,
    { w: workspace, s: filter.sessionId, o: filter.observerId, p: filter.senderId },
  );
  expect(result.errors).toBeUndefined();
  return result.data!.deriverStatus;
}

const FILTERS: Filter[] = [
  {},
  { sessionId: 's7' },
  { observerId: 'p2' },
  { observerId: 'p0' },
  { senderId: 'p0' },
  { observerId: 'p2', senderId: 'p1' },
  { sessionId: 's7', observerId: 'p2', senderId: 'p0' },
];

async function expectExact(workspace = WS): Promise<void> {
  for (const filter of FILTERS)
    expect(await served(filter, workspace), JSON.stringify(filter)).toEqual(await inSql(filter, workspace));
}

/**
 * A workspace's history of every kind: rows unprocessed, processed, errored, and held by a deriver
 * worker. Returns a query runner for it (`$w` stands for the workspace).
 */
async function historyOfEveryKind(workspace: string, sessions = 300) {
  await finished(writer({ workspace, phases: ['api'], sessions, messagesPerSession: 3 }));
  const history = (sql: string) => honcho.query(sql.replaceAll('$w', `'${workspace}'`));
  await history(`UPDATE queue SET processed = true, error = CASE WHEN id % 2 = 0 THEN 'boom' END
    WHERE workspace_name = $w AND id % 3 = 0`);
  await history(`INSERT INTO active_queue_sessions (work_unit_key)
    SELECT DISTINCT work_unit_key FROM queue WHERE workspace_name = $w AND NOT processed AND id % 7 = 0`);
  return history;
}

/**
 * Each workspace's totals, with the change rows not folded into them yet, equal the sum of its
 * units' own counter rows (what a status without a filter would read without the totals).
 */
async function expectTotalsEqualUnits(): Promise<void> {
  const sums = (from: string) =>
    `SELECT workspace_id, coalesce(sum(pending), 0) AS pending, coalesce(sum(running), 0) AS running,
       coalesce(sum(completed), 0) AS completed, coalesce(sum(failed), 0) AS failed
     FROM ${from} GROUP BY workspace_id`;
  const { rows } = await honcho.query(
    `SELECT workspace_id, u.pending, u.running, u.completed, u.failed, t.pending, t.running, t.completed, t.failed
     FROM (${sums('deriver_live_honcho.work_units WHERE NOT per_observer')}) u
     FULL JOIN (${sums(`(SELECT * FROM deriver_live_honcho.workspace_totals
       UNION ALL SELECT * FROM deriver_live_honcho.workspace_changes) both_kinds`)}) t USING (workspace_id)
     WHERE (coalesce(u.pending, 0), coalesce(u.running, 0), coalesce(u.completed, 0), coalesce(u.failed, 0))
       <> (coalesce(t.pending, 0), coalesce(t.running, 0), coalesce(t.completed, 0), coalesce(t.failed, 0))`,
  );
  expect(rows).toEqual([]);
}

/** An instance serves the attached Honcho: `workspace`'s counts, of every kind, are exact. Then detach. */
async function expectServedExactlyThenDetach(
  workspace: string,
  { totals = true, logger }: { totals?: boolean; logger?: pino.Logger } = {},
): Promise<void> {
  server = await startTestServer({ config: { honchoDatabaseUrl: url, workerConcurrency: 0 }, logger });
  try {
    const all = await inSql({}, workspace);
    expect(all.completedWorkUnits).toBeGreaterThan(0);
    expect(all.failedWorkUnits).toBeGreaterThan(0);
    expect(all.inProgressWorkUnits).toBeGreaterThan(0);
    expect(all.pendingWorkUnits).toBeGreaterThan(0);
    await expectExact(workspace);
    if (totals) await expectTotalsEqualUnits();
  } finally {
    await server.close();
    expect((await honchoCommand(['detach', '--database-url', url], {})).code).toBe(0);
  }
}

it('serves a running Honcho its exact status, pushed, through its deriver being killed, a rollback and its cleanup', async () => {
  // Honcho has history before Deriver Live attaches.
  await finished(writer({ phases: ['api'], sessions: SESSIONS, messagesPerSession: 3 }));
  const steps: string[] = [];
  const attached = await honchoCommand(['attach', '--database-url', url], {}, (line) => steps.push(line));
  expect(attached).toMatchObject({ code: 0, stdout: expect.stringMatching(/^attached/) });
  // Each step said as it ended; 10,000 sessions' units are added in chunks, and said as they go.
  expect(steps[0]).toMatch(/^attach 1\/3: change capture installed/);
  expect(steps[1]).toMatch(/^attach 2\/3: counted what the queue held before/);
  expect(steps.slice(2, -1).length).toBeGreaterThan(0);
  for (const line of steps.slice(2, -1))
    expect(line).toMatch(/^attach 3\/3: added [\d,]+ of [\d,]+ counter rows\n$/);
  expect(steps.at(-1)).toMatch(/^attach 3\/3: added [\d,]+ counter rows: the counts are exact\n$/);
  expect((await honchoCommand(['attach', '--database-url', url], {})).stdout).toMatch(/already attached/);

  server = await startTestServer({
    config: { honchoDatabaseUrl: url, workerConcurrency: 0, webhookAllowPrivate: true },
  });
  await expectExact();
  const before = await served({});
  expect(before.totalWorkUnits).toBe(SESSIONS * 3 + SESSIONS); // a representation row per message, a summary per session
  expect(before.pendingWorkUnits).toBe(before.totalWorkUnits);

  // A second instance attached to the same Honcho: its subscriber is pushed the same progress.
  const other = await startTestServer({ config: { honchoDatabaseUrl: url, workerConcurrency: 0 } });
  const secondWs = createClient({
    url: other.url.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    retryAttempts: 0,
  });
  const secondIdle = new Promise<Counts>((resolve, reject) => {
    let last: Counts | undefined;
    secondWs.subscribe<{ deriverStatus: Counts }>(
      { query: `subscription { deriverStatus(workspaceId: "${WS}", untilIdle: true) { ${COUNTS} } }` },
      {
        next: (r) => {
          last = r.data!.deriverStatus;
        },
        error: reject,
        complete: () => resolve(last!),
      },
    );
  });

  // A subscriber waits for the workspace to be idle, and one watches session s7 move.
  const ws = createClient({
    url: server.url.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    retryAttempts: 0,
  });
  const moves: Counts[] = [];
  const idle = new Promise<Counts>((resolve, reject) => {
    let last: Counts | undefined;
    ws.subscribe<{ deriverStatus: Counts }>(
      { query: `subscription { deriverStatus(workspaceId: "${WS}", untilIdle: true) { ${COUNTS} } }` },
      {
        next: (r) => {
          last = r.data!.deriverStatus;
        },
        error: reject,
        complete: () => resolve(last!),
      },
    );
  });
  ws.subscribe<{ deriverStatus: Counts }>(
    {
      query: `subscription { deriverStatus(workspaceId: "${WS}", sessionId: "s7", coalesceMs: 0) { ${COUNTS} } }`,
    },
    { next: (r) => void moves.push(r.data!.deriverStatus), error: () => {}, complete: () => {} },
  );

  // Honcho's deriver takes units and is SIGKILLed while it holds some.
  const killed = writer({ phases: ['deriver'], unitsPerBatch: 500, holdAfter: 20 });
  await printed(killed, /holding \d+/);
  await expectExact();
  expect((await served({})).inProgressWorkUnits).toBeGreaterThan(0);
  killed.kill('SIGKILL');
  await new Promise((resolve) => killed.once('exit', resolve));
  // Honcho's own recovery releases the dead worker's units: they are pending again.
  await honcho.query('DELETE FROM active_queue_sessions');
  await expectExact();
  expect((await served({})).inProgressWorkUnits).toBe(0);

  // A transaction that rolls back is never counted.
  await honcho.query('BEGIN');
  await honcho.query(
    `INSERT INTO queue (work_unit_key, task_type, payload, workspace_name)
     VALUES ('summary:acme:s7:None:None', 'summary', '{"task_type":"summary","session_name":"s7"}', 'acme')`,
  );
  await honcho.query('ROLLBACK');
  await expectExact();

  // Another deriver finishes the work: the subscriber's wait ends exact.
  await finished(writer({ phases: ['deriver'], unitsPerBatch: 500 }));
  const last = await idle;
  const exact = await inSql({});
  expect(await secondIdle).toEqual(exact);
  await secondWs.dispose();
  await other.close();
  expect(exact.pendingWorkUnits + exact.inProgressWorkUnits).toBe(0);
  expect(last).toEqual(exact);
  await expectExact();
  // The workspace's totals: exact, and an instance that never read it answers from them at once.
  await expectTotalsEqualUnits();
  const cold = await startTestServer({ config: { honchoDatabaseUrl: url, workerConcurrency: 0 } });
  try {
    const result = await cold.http<{ deriverStatus: Counts }>(
      `{ deriverStatus(workspaceId: "${WS}") { ${COUNTS} } }`,
    );
    expect(result.data?.deriverStatus).toEqual(exact);
  } finally {
    await cold.close();
  }
  // The change rows Honcho's commits added are folded into the totals (a second after they were heard).
  await expect
    .poll(
      async () =>
        (await honcho.query('SELECT count(*)::int AS n FROM deriver_live_honcho.workspace_changes')).rows[0]
          .n,
      { timeout: 20_000 },
    )
    .toBe(0);
  await expectTotalsEqualUnits();
  expect(moves[0]!.completedWorkUnits).toBe(0);
  expect(moves.at(-1)).toEqual(await inSql({ sessionId: 's7' }));
  await ws.dispose();
  expect(exact.failedWorkUnits).toBeGreaterThan(0);

  // The dashboard shows it (a real browser).
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    await page.goto(new URL(`/?workspace=${WS}`, server.url).toString());
    await expect
      .poll(() => page.locator('[data-testid="total"]').textContent())
      .toBe(String(exact.totalWorkUnits));
    expect(await page.locator('[data-testid="failed"]').textContent()).toBe(String(exact.failedWorkUnits));
    expect(await page.locator('[data-testid="pending"]').textContent()).toBe('0');
  } finally {
    await browser.close();
  }

  // Webhooks: a small workspace of Honcho's, watched by an endpoint registered here, gets one
  // signed queue.empty per work unit and one session.idle per session as Honcho's deriver drains
  // them, written in Honcho's transactions and delivered from this instance's outbox.
  const received: { type: string; data: Record<string, string | null> }[] = [];
  const hooks = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => {
      body += chunk;
    });
    req.on('end', () => {
      received.push(JSON.parse(body));
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => hooks.listen(0, '127.0.0.1', resolve));
  try {
    const hooksUrl = `http://127.0.0.1:${(hooks.address() as AddressInfo).port}/`;
    const created = await server.http(
      `mutation { createWebhook(workspaceId: "tiny", url: "${hooksUrl}", events: [QUEUE_EMPTY, SESSION_IDLE], secret: "a-secret-of-the-tiny-workspace") { id } }`,
    );
    expect(created.errors).toBeUndefined();
    await finished(
      writer({
        workspace: 'tiny',
        phases: ['api', 'deriver'],
        sessions: 2,
        messagesPerSession: 3,
        unitsPerBatch: 1,
      }),
    );
    // Per session: a representation unit for each of 3 senders and a summary unit; 2 sessions.
    await expect.poll(() => received.length, { timeout: 30_000 }).toBe(10);
    const idle = received.filter((e) => e.type === 'session.idle').map((e) => e.data.session_id);
    expect(idle.sort()).toEqual(['s0', 's1']);
    const emptied = received.filter((e) => e.type === 'queue.empty');
    expect(
      new Set(emptied.map((e) => `${e.data.session_id}/${e.data.queue_type}/${e.data.observed}`)).size,
    ).toBe(8);
    // Each event leaves Honcho's table in the transaction that took it, which commits after the
    // event is in this instance's outbox: the deliveries can arrive first.
    await expect
      .poll(
        async () =>
          (await honcho.query('SELECT count(*)::int AS n FROM deriver_live_honcho.events')).rows[0].n,
        { timeout: 20_000 },
      )
      .toBe(0);
  } finally {
    await new Promise((resolve) => hooks.close(resolve));
  }

  // Honcho's cleanup deletes processed rows: its own count of completed drops to 0; ours keeps them.
  await finished(writer({ phases: ['cleanup'] }));
  expect((await inSql({})).totalWorkUnits).toBe(0);
  expect(await served({})).toEqual(last);

  await server.close();
  server = undefined as unknown as TestServer;

  // Two of Honcho's transactions drain a session's last two units at once: exactly one
  // session.idle (each alone would see the other's unit still busy: the per-session lock orders
  // them). Nothing relays events now (the server is closed): they stay in Honcho's table.
  await honcho.query("INSERT INTO workspaces (id, name) VALUES ('race', 'race')");
  const keys = ['representation:race:r:p0', 'summary:race:r:None:None'];
  await honcho.query(
    `INSERT INTO queue (work_unit_key, task_type, payload, workspace_name)
     SELECT k, split_part(k, ':', 1), jsonb_build_object('task_type', split_part(k, ':', 1),
       'session_name', 'r', 'observers', jsonb_build_array('p0'), 'observed', 'p0'), 'race'
     FROM unnest($1::text[]) k`,
    [keys],
  );
  const [first, second] = [
    new pg.Client({ connectionString: url }),
    new pg.Client({ connectionString: url }),
  ];
  await Promise.all([first.connect(), second.connect()]);
  try {
    await first.query('BEGIN');
    await first.query('UPDATE queue SET processed = true WHERE work_unit_key = $1', [keys[0]]);
    await second.query('BEGIN');
    const secondDrains = second.query('UPDATE queue SET processed = true WHERE work_unit_key = $1', [
      keys[1],
    ]);
    // The second waits for the first's lock on the session (a state, not a time).
    await expect
      .poll(
        async () =>
          (
            await honcho.query(
              "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
            )
          ).rows[0].n,
      )
      .toBe(1);
    await first.query('COMMIT');
    await secondDrains;
    await second.query('COMMIT');
  } finally {
    await Promise.all([first.end(), second.end()]);
  }
  const idleEvents = await honcho.query(
    "SELECT count(*)::int AS n FROM deriver_live_honcho.events WHERE type = 'session.idle' AND workspace_id = 'race'",
  );
  expect(idleEvents.rows[0]).toEqual({ n: 1 });

  // Detach leaves Honcho's tables as they were.
  expect((await honchoCommand(['detach', '--database-url', url], {})).code).toBe(0);
  const left = await honcho.query(
    `SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'deriver_live%') AS triggers,
       (SELECT count(*) FROM pg_namespace WHERE nspname = 'deriver_live_honcho') AS schemas`,
  );
  expect(left.rows[0]).toEqual({ triggers: '0', schemas: '0' });
}, 240_000);

it('attached to a history of every kind (processed, errored, held, unprocessed), counts it exactly', async () => {
  const workspace = 'history';
  await historyOfEveryKind(workspace);
  expect((await honchoCommand(['attach', '--database-url', url], {})).code).toBe(0);
  await expectServedExactlyThenDetach(workspace);
}, 120_000);

it("attaches without holding Honcho's writes: what Honcho writes while attach counts is counted once", async () => {
  const workspace = 'busy';
  const history = await historyOfEveryKind(workspace);
  let wrote = false;
  const outcome = await attachHoncho(url, {
    // The triggers are in, attach has not taken its snapshot: these are in the snapshot, and the
    // triggers counted them too.
    afterInstall: async () => {
      await history(
        `UPDATE queue SET processed = true WHERE workspace_name = $w AND NOT processed AND id % 19 = 3`,
      );
      await history(`INSERT INTO queue (session_id, work_unit_key, task_type, payload, workspace_name, message_id)
        SELECT session_id, work_unit_key, task_type, payload, workspace_name, message_id FROM queue
        WHERE workspace_name = $w AND id % 23 = 0`);
      await history(`DELETE FROM queue WHERE workspace_name = $w AND NOT processed AND id % 29 = 0`);
    },
    // Attach's snapshot is taken and it has not counted yet: Honcho goes on, and every write
    // commits at once (were one held by attach, it would wait for this very callback: the
    // statement timeout says so rather than the test's).
    whileCounting: async () => {
      await honcho.query("SET statement_timeout = '20s'");
      await history(
        `UPDATE queue SET processed = true WHERE workspace_name = $w AND NOT processed AND id % 5 = 1`,
      );
      await history(
        `UPDATE queue SET processed = true, error = 'late' WHERE workspace_name = $w AND NOT processed AND id % 5 = 2`,
      );
      await history(`INSERT INTO queue (session_id, work_unit_key, task_type, payload, workspace_name, message_id)
        SELECT session_id, work_unit_key, task_type, payload, workspace_name, message_id FROM queue
        WHERE workspace_name = $w AND id % 4 = 0`);
      await history(`DELETE FROM queue WHERE workspace_name = $w AND NOT processed AND id % 11 = 0`);
      await history(`INSERT INTO active_queue_sessions (work_unit_key)
        SELECT DISTINCT work_unit_key FROM queue WHERE workspace_name = $w AND NOT processed AND id % 13 = 0
        ON CONFLICT (work_unit_key) DO NOTHING`);
      await history(`DELETE FROM active_queue_sessions WHERE work_unit_key IN
        (SELECT work_unit_key FROM queue WHERE workspace_name = $w AND id % 17 = 0)`);
      await honcho.query('RESET statement_timeout');
      wrote = true;
    },
  });
  expect(outcome).toBe('attached');
  expect(wrote).toBe(true);
  await expectServedExactlyThenDetach(workspace);
}, 120_000);

it("keeps completed the rows processed before attach that Honcho's cleanup deletes while attach runs", async () => {
  const workspace = 'cleaned';
  const history = await historyOfEveryKind(workspace, 100);
  const before = await inSql({}, workspace);
  expect(before.completedWorkUnits).toBeGreaterThan(0);
  const cleanup = async (which: string) => {
    await history(`DELETE FROM queue WHERE workspace_name = $w AND processed AND ${which}`);
  };
  expect(
    await attachHoncho(url, {
      // Before attach's snapshot: rows its count cannot see any more.
      afterInstall: () => cleanup('id % 2 = 0'),
      // After it: rows its count sees, deleted meanwhile.
      whileCounting: () => cleanup('true'),
    }),
  ).toBe('attached');
  const left = await inSql({}, workspace);
  expect(left.completedWorkUnits).toBe(0);
  server = await startTestServer({ config: { honchoDatabaseUrl: url, workerConcurrency: 0 } });
  try {
    // Honcho's own count dropped them; ours still counts each once, as completed.
    expect(await served({}, workspace)).toEqual({
      ...left,
      totalWorkUnits: left.totalWorkUnits + before.completedWorkUnits,
      completedWorkUnits: before.completedWorkUnits,
      failedWorkUnits: before.failedWorkUnits,
    });
    await expectTotalsEqualUnits();
  } finally {
    await server.close();
    expect((await honchoCommand(['detach', '--database-url', url], {})).code).toBe(0);
  }
}, 120_000);

it("serves a Honcho attached before the workspace totals from its units' sums", async () => {
  const workspace = 'attached-earlier';
  await historyOfEveryKind(workspace, 50);
  expect((await honchoCommand(['attach', '--database-url', url], {})).code).toBe(0);
  // What an earlier build's attach left: no totals (its triggers wrote no change rows either).
  await honcho.query('DROP TABLE deriver_live_honcho.workspace_totals');
  // Attach again says what it found, and how to get the totals.
  expect((await honchoCommand(['attach', '--database-url', url], {})).stdout).toMatch(
    /^already attached, by an earlier build: .* run detach, then attach, to add them\n$/,
  );
  // An instance serves it exact, and says in its log how to get the totals.
  const warnings: string[] = [];
  const logger = pino(
    { level: 'warn' },
    new Writable({
      write(chunk, _encoding, done) {
        warnings.push(JSON.parse(String(chunk)).msg);
        done();
      },
    }),
  );
  await expectServedExactlyThenDetach(workspace, { totals: false, logger });
  expect(warnings).toEqual([
    expect.stringMatching(/attached by an earlier Deriver Live: .* to keep per-workspace totals$/),
  ]);
}, 120_000);

it('resumes an attach cut short, and serves nothing until it is done', async () => {
  const workspace = 'resumed';
  const history = await historyOfEveryKind(workspace, 50);
  // Cut short inside its count: the triggers are in, the earlier rows not counted yet.
  const cut = new Error('cut short');
  await expect(
    attachHoncho(url, {
      whileCounting: () => Promise.reject(cut),
    }),
  ).rejects.toBe(cut);
  await expect(startTestServer({ config: { honchoDatabaseUrl: url } })).rejects.toThrow(/has not finished/);
  await history(
    `UPDATE queue SET processed = true WHERE workspace_name = $w AND NOT processed AND id % 2 = 0`,
  );
  const resumed: string[] = [];
  expect(
    (await honchoCommand(['attach', '--database-url', url], {}, (line) => resumed.push(line))).code,
  ).toBe(0);
  expect(resumed[0]).toBe('attach resumed where it stopped (capturing)\n');
  await expectServedExactlyThenDetach(workspace);
}, 120_000);

it('refuses to detach while an attach runs, and detaches once it has finished', async () => {
  const workspace = 'detach-during-attach';
  await historyOfEveryKind(workspace, 20);
  let letAttachGoOn = () => {};
  let attaching: Promise<unknown> = Promise.resolve();
  // The attach stops inside its count (step 2) until the test lets it go on.
  const counting = new Promise<void>((inside) => {
    attaching = attachHoncho(url, {
      whileCounting: () =>
        new Promise<void>((goOn) => {
          letAttachGoOn = goOn;
          inside();
        }),
    });
  });
  await counting;
  const refused = await honchoCommand(['detach', '--database-url', url], {});
  expect(refused).toMatchObject({
    code: 1,
    stderr: expect.stringMatching(/an attach is running on this database/),
  });
  letAttachGoOn();
  expect(await attaching).toBe('attached');
  await expectServedExactlyThenDetach(workspace);
}, 120_000);

it('says what to do when the database is not Honcho or not attached', async () => {
  const notHoncho = await honchoCommand(['attach', '--database-url', inject('postgresUrl')], {});
  expect(notHoncho).toMatchObject({ code: 1, stderr: expect.stringMatching(/has no Honcho queue/) });
  expect((await honchoCommand(['attach'], {})).stderr).toMatch(/--database-url/);
  await expect(startTestServer({ config: { honchoDatabaseUrl: url } })).rejects.toThrow(/is not attached/);
});
