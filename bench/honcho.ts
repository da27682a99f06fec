/**
 * A running Honcho, attached (docs/honcho-attach.md), on one PostgreSQL (TEST_DATABASE_URL, else
 * the embedded server the tests use), a database of its own with Honcho's tables:
 *
 * 1. For each size of Honcho's queue (SIZES=10000,100000,1000000 rows, 10% unprocessed, 5 rows a
 *    unit): Honcho's own status query (the window-function aggregate of its `get_queue_status`,
 *    for the workspace) against ours read cold (the workspace's totals, as an instance reads a
 *    filter it has not watched yet; and, to compare, the indexed sum over its units that a filter
 *    naming a session or peer reads) and warm (GraphQL over HTTP to a server with HONCHO_DATABASE_URL, answered from memory, beside `{ __typename }` on the
 *    same server: the HTTP floor); p50/p99 over QUERIES each.
 * 2. What change capture costs Honcho's writes, before and after attach, in the same run: an
 *    INSERT of 100 queue rows (one enqueue), and an UPDATE marking 100 rows processed (one batch).
 * 3. From a row's commit (acknowledged to Honcho) to a client knowing it is processed: pushed (a
 *    subscription) against polling Honcho's status every second and every 100 ms (ROUNDS each);
 *    and the push from Honcho's UPDATE sent, with its statement and its commit apart.
 * 4. The alternative to triggers, measured the same way on a private server run with
 *    `wal_level=logical` (LOGICAL=0 skips it): the same writes with nothing attached, with a
 *    logical replication slot (`pgoutput`, a publication of Honcho's two tables) drained by a
 *    consumer while they run, and with the triggers.
 *
 *   npm run bench:honcho            (SIZES=..., QUERIES=200, ROUNDS=20, LOGICAL=1)
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClient } from 'graphql-ws';
import pg from 'pg';
import WebSocket from 'ws';
import { attachHoncho, detachHoncho } from '../src/honcho/attach.ts';
import { openHonchoSource } from '../src/honcho/honcho-source.ts';
import { startTestServer } from '../test/server-helpers.ts';
import { startPostgres, startPrivatePostgres } from '../test/support/postgres-server.ts';
import { percentile, report, round } from './util.ts';

const SIZES = (process.env.SIZES ?? '10000,100000,1000000').split(',').map(Number);
const QUERIES = Number(process.env.QUERIES ?? 200);
const ROUNDS = Number(process.env.ROUNDS ?? 20);
const WS = 'bench';
const SCHEMA = readFileSync(new URL('../test/fixtures/honcho/schema.sql', import.meta.url), 'utf8');

const postgres = await startPostgres();
const admin = new pg.Client({ connectionString: postgres.url });
await admin.connect();
const name = `honcho_bench_${randomUUID().replace(/-/g, '').slice(0, 10)}`;
await admin.query(`CREATE DATABASE ${name}`);
const at = new URL(postgres.url);
at.pathname = `/${name}`;
const url = at.toString();
const db = new pg.Client({ connectionString: url });
await db.connect();
await db.query(SCHEMA);
await db.query("INSERT INTO workspaces (id, name) VALUES ('bench', 'bench')");

const now = () => performance.now();
const stats = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return { p50Ms: round(percentile(sorted, 50), 2), p99Ms: round(percentile(sorted, 99), 2) };
};
async function timed(times: number, run: () => Promise<unknown>): Promise<{ p50Ms: number; p99Ms: number }> {
  const samples: number[] = [];
  for (let i = 0; i < times; i++) {
    const start = now();
    await run();
    samples.push(now() - start);
  }
  return stats(samples);
}

/** Honcho's `_build_queue_status_query` for a workspace, as SQLAlchemy writes it. */
const HONCHO_STATUS = `SELECT queue.session_id,
    count(*) OVER () AS total,
    count(CASE WHEN queue.processed THEN 1 END) OVER () AS completed,
    count(CASE WHEN NOT queue.processed AND active_queue_sessions.id IS NOT NULL THEN 1 END) OVER () AS in_progress,
    count(CASE WHEN NOT queue.processed AND active_queue_sessions.id IS NULL THEN 1 END) OVER () AS pending,
    count(*) OVER (PARTITION BY queue.session_id) AS session_total
  FROM queue LEFT OUTER JOIN active_queue_sessions ON queue.work_unit_key = active_queue_sessions.work_unit_key
  WHERE queue.workspace_name = $1 AND queue.task_type IN ('representation', 'summary', 'dream')`;

/** Grows Honcho's queue to `rows` rows: 5 a unit, 100 units a session, 10% unprocessed. */
async function grow(client: pg.Client, to: number, from: number): Promise<void> {
  const sessionsNeeded = Math.ceil(to / 500);
  await client.query(
    `INSERT INTO sessions (id, name, workspace_name) SELECT 'bench:s' || i, 's' || i, 'bench'
     FROM generate_series(0, $1 - 1) i ON CONFLICT DO NOTHING`,
    [sessionsNeeded],
  );
  for (let lo = from; lo < to; lo += 100_000) {
    const hi = Math.min(to, lo + 100_000);
    await client.query(
      `INSERT INTO queue (session_id, work_unit_key, task_type, payload, processed, workspace_name)
       SELECT 'bench:s' || (i / 500), 'representation:bench:s' || (i / 500) || ':p' || ((i / 5) % 100),
         'representation',
         jsonb_build_object('task_type', 'representation', 'session_name', 's' || (i / 500),
           'observers', jsonb_build_array('p' || ((i / 5) % 100), 'agent'), 'observed', 'p' || ((i / 5) % 100)),
         i % 10 <> 0, 'bench'
       FROM generate_series($1::bigint, $2::bigint - 1) i`,
      [lo, hi],
    );
  }
  await client.query('ANALYZE queue');
}

/**
 * Runs `work` while another connection enqueues one row at a time, as Honcho's API would: how many
 * commits, and the longest one (ms), which is how long `work` held Honcho's writes at most.
 */
async function whileWriting(url: string, work: () => Promise<unknown>) {
  const writer = new pg.Client({ connectionString: url });
  await writer.connect();
  let done = false;
  let commits = 0;
  let longestMs = 0;
  const writing = (async () => {
    while (!done) {
      const start = now();
      await writer.query(
        `INSERT INTO queue (work_unit_key, task_type, payload, workspace_name)
         VALUES ('representation:bench:attach:px', 'representation', '{"session_name": "attach", "observed": "px"}', 'bench')`,
      );
      longestMs = Math.max(longestMs, now() - start);
      commits++;
    }
  })();
  try {
    await work();
  } finally {
    done = true;
    await writing;
    await writer.query(`DELETE FROM queue WHERE work_unit_key = 'representation:bench:attach:px'`);
    await writer.end();
  }
  return { commits, longestMs: round(longestMs, 1) };
}

/** What one enqueue (100 rows) and one processed batch (100 rows) cost Honcho, mean ms over `times`. */
async function writeCost(
  client: pg.Client,
  times: number,
): Promise<{ insert100Ms: number; process100Ms: number }> {
  let insert = 0;
  let update = 0;
  for (let i = 0; i < times; i++) {
    const key = `representation:bench:w${i}:px`;
    let start = now();
    await client.query(
      `INSERT INTO queue (work_unit_key, task_type, payload, workspace_name)
       SELECT $1, 'representation', jsonb_build_object('task_type', 'representation', 'session_name', 'w',
         'observers', jsonb_build_array('px', 'agent'), 'observed', 'px'), 'bench' FROM generate_series(1, 100)`,
      [key],
    );
    insert += now() - start;
    start = now();
    await client.query('UPDATE queue SET processed = true WHERE work_unit_key = $1 AND NOT processed', [key]);
    update += now() - start;
  }
  return { insert100Ms: round(insert / times, 2), process100Ms: round(update / times, 2) };
}

const figures: Record<string, unknown> = {};

let rows = 0;
for (const size of SIZES) {
  if (size > rows) await detachHoncho(url);
  await grow(db, size, rows);
  rows = size;
  const attachStart = now();
  const writesDuringAttach = await whileWriting(url, () => attachHoncho(url));
  const attachMs = round(now() - attachStart, 0);
  const server = await startTestServer({ config: { honchoDatabaseUrl: url, workerConcurrency: 0 } });
  const counters = new pg.Client({ connectionString: url });
  await counters.connect();
  const honcho = await timed(Math.min(QUERIES, 50), () => db.query(HONCHO_STATUS, [WS]));
  // Cold: what an instance reads for a filter it has not watched yet. The whole workspace (the
  // headline figure) reads its totals; the sum over its units is what it would cost without them.
  const source = await openHonchoSource(url);
  const cold = await timed(QUERIES, () => source.sumCounters({ workspaceId: WS }, { sessions: false }));
  await source.close();
  const unitsSum = await timed(QUERIES, () =>
    counters.query(
      `SELECT sum(pending), sum(running), sum(completed), sum(failed) FROM deriver_live_honcho.work_units
       WHERE workspace_id = $1 AND per_observer = false`,
      [WS],
    ),
  );
  const status = 'query { deriverStatus(workspaceId: "bench") { totalWorkUnits pendingWorkUnits } }';
  await server.http(status);
  const warm = await timed(QUERIES, () => server.http(status));
  const floor = await timed(QUERIES, () => server.http('{ __typename }'));
  const line = {
    bench: 'honcho',
    phase: 'status',
    rows: size,
    attachMs,
    // Honcho's enqueues while attach ran, one after another: the longest shows what attach held.
    writesDuringAttach,
    honchoStatusQuery: honcho,
    oursCold: cold,
    oursUnitsSum: unitsSum,
    oursWarmHttp: warm,
    httpFloor: floor,
    warmRatio: round(warm.p99Ms / floor.p99Ms, 2),
  };
  report(line);
  figures[String(size)] = line;
  await counters.end();
  await server.close();
}

// The same writes on the largest queue, without and then with change capture.
await detachHoncho(url);
const costBefore = await writeCost(db, 50);
await attachHoncho(url);
const costAfter = await writeCost(db, 50);
report({ bench: 'honcho', phase: 'write-cost', rows, without: costBefore, with: costAfter });

// From a row's commit to a client knowing: pushed against polling every 1 s and every 100 ms.
const server = await startTestServer({ config: { honchoDatabaseUrl: url, workerConcurrency: 0 } });
const ws = createClient({
  url: server.url.replace(/^http/, 'ws'),
  webSocketImpl: WebSocket,
  retryAttempts: 0,
});
const seen: { completed: number; at: number }[] = [];
let wake: (() => void) | null = null;
ws.subscribe<{ deriverStatus: { completedWorkUnits: number } }>(
  {
    query:
      'subscription { deriverStatus(workspaceId: "bench", sessionId: "live", coalesceMs: 0) { completedWorkUnits } }',
  },
  {
    next: (r) => {
      seen.push({ completed: r.data!.deriverStatus.completedWorkUnits, at: now() });
      wake?.();
    },
    error: () => {},
    complete: () => {},
  },
);
await db.query("INSERT INTO sessions (id, name, workspace_name) VALUES ('bench:live', 'live', 'bench')");
const poll = async (everyMs: number, target: number): Promise<number> => {
  for (;;) {
    const { rows: r } = await db.query<{ n: string }>(
      "SELECT count(*) FILTER (WHERE processed) AS n FROM queue WHERE workspace_name = 'bench' AND session_id = 'bench:live'",
    );
    if (Number(r[0]?.n) >= target) return now();
    await sleep(everyMs);
  }
};
const pushed: number[] = [];
const pushedFromSent: number[] = [];
const statement: number[] = [];
const commit: number[] = [];
const polled1s: number[] = [];
const polled100: number[] = [];
for (let round_ = 1; round_ <= ROUNDS; round_++) {
  const id = (
    await db.query<{ id: string }>(
      `INSERT INTO queue (session_id, work_unit_key, task_type, payload, workspace_name)
       VALUES ('bench:live', 'representation:bench:live:p', 'representation',
         '{"task_type":"representation","session_name":"live","observers":["p"],"observed":"p"}', 'bench') RETURNING id`,
    )
  ).rows[0]!.id;
  // The pollers are mid-interval when the row is processed, as a poller would be.
  const pollers = [poll(1000, round_), poll(100, round_)];
  await sleep(Math.random() * 1000);
  const heard = new Promise<number>((resolve) => {
    const check = () => {
      const hit = seen.find((s) => s.completed >= round_);
      if (hit) {
        wake = null;
        resolve(hit.at);
      }
    };
    wake = check;
    check();
  });
  // Honcho's transaction, as SQLAlchemy sends it: where the time goes, from the statement sent.
  const sent = now();
  await db.query('BEGIN');
  await db.query('UPDATE queue SET processed = true WHERE id = $1', [id]);
  const committing = now();
  await db.query('COMMIT');
  const committed = now();
  const at = await heard;
  pushedFromSent.push(at - sent);
  statement.push(committing - sent);
  commit.push(committed - committing);
  // After Honcho's commit is acknowledged (the notice can reach the client first: then 0).
  pushed.push(Math.max(0, at - committed));
  const [at1s, at100] = await Promise.all(pollers);
  polled1s.push(Math.max(0, at1s! - committed));
  polled100.push(Math.max(0, at100! - committed));
}
const mean = (xs: number[]) => round(xs.reduce((a, b) => a + b, 0) / xs.length, 1);
report({
  bench: 'honcho',
  phase: 'commit-to-client',
  rounds: ROUNDS,
  pushed: stats(pushed),
  // The same push from Honcho's UPDATE sent, and the two parts of Honcho's own transaction in it.
  pushedFromStatementSent: stats(pushedFromSent),
  honchoStatement: stats(statement),
  honchoCommit: stats(commit),
  poll1s: { meanMs: mean(polled1s), ...stats(polled1s) },
  poll100ms: { meanMs: mean(polled100), ...stats(polled100) },
});
await ws.dispose();
await server.close();

// 4. Logical replication instead of triggers: what each costs Honcho's writes, same server, same run.
let logical: Record<string, unknown> | null = null;
if (process.env.LOGICAL !== '0') {
  const server = await startPrivatePostgres([
    'wal_level=logical',
    'max_replication_slots=4',
    'max_wal_senders=4',
  ]);
  const client = new pg.Client({ connectionString: server.url });
  await client.connect();
  await client.query(SCHEMA);
  await client.query("INSERT INTO workspaces (id, name) VALUES ('bench', 'bench')");
  const history = Math.min(rows, 100_000);
  await grow(client, history, 0);
  const nothing = await writeCost(client, 50);
  await client.query('CREATE PUBLICATION deriver_live_bench FOR TABLE queue, active_queue_sessions');
  await client.query("SELECT pg_create_logical_replication_slot('deriver_live_bench', 'pgoutput')");
  const consumer = new pg.Client({ connectionString: server.url });
  await consumer.connect();
  let draining = true;
  let decoded = 0;
  const drain = (async () => {
    while (draining) {
      const changes = await consumer.query<{ n: string }>(
        `SELECT count(*) AS n FROM pg_logical_slot_get_binary_changes('deriver_live_bench', NULL, NULL,
           'proto_version', '1', 'publication_names', 'deriver_live_bench')`,
      );
      decoded += Number(changes.rows[0]?.n);
      await sleep(10);
    }
  })();
  const slot = await writeCost(client, 50);
  draining = false;
  await drain;
  await consumer.end();
  await client.query("SELECT pg_drop_replication_slot('deriver_live_bench')");
  await client.query('DROP PUBLICATION deriver_live_bench');
  await attachHoncho(server.url);
  const triggers = await writeCost(client, 50);
  await client.end();
  await server.stop();
  logical = { rows: history, nothing, logicalSlotDrained: slot, messagesDecoded: decoded, triggers };
  report({ bench: 'honcho', phase: 'capture-choice', ...logical });
}

await db.end();
await admin.query(`DROP DATABASE ${name} WITH (FORCE)`);
await admin.end();
await postgres.stop();
const last = figures[String(SIZES.at(-1))] as Record<string, { p99Ms: number }> | undefined;
report({
  bench: 'honcho',
  rows: SIZES.at(-1),
  honchoStatusP99Ms: last?.honchoStatusQuery?.p99Ms ?? null,
  coldP99Ms: last?.oursCold?.p99Ms ?? null,
  unitsSumP99Ms: last?.oursUnitsSum?.p99Ms ?? null,
  warmP99Ms: last?.oursWarmHttp?.p99Ms ?? null,
  httpFloorP99Ms: last?.httpFloor?.p99Ms ?? null,
  attachMs: (last as { attachMs?: number } | undefined)?.attachMs ?? null,
  longestWriteDuringAttachMs:
    (last as { writesDuringAttach?: { longestMs: number } } | undefined)?.writesDuringAttach?.longestMs ??
    null,
  pushedP99Ms: stats(pushed).p99Ms,
  pushedFromStatementSentP99Ms: stats(pushedFromSent).p99Ms,
  poll1sMeanMs: mean(polled1s),
  poll100msMeanMs: mean(polled100),
  insert100Ms: costAfter.insert100Ms,
  insert100MsWithoutCapture: costBefore.insert100Ms,
  process100Ms: costAfter.process100Ms,
  process100MsWithoutCapture: costBefore.process100Ms,
  logicalSlotProcess100Ms:
    (logical?.logicalSlotDrained as { process100Ms: number } | undefined)?.process100Ms ?? null,
});
