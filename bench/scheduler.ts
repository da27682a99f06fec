/**
 * Scheduler throughput: 100k no-op tasks over 1,000 work units, concurrency 8.
 *
 *   npm run bench:scheduler                      (TASKS=100000 UNITS=1000 CONCURRENCY=8 change the shape)
 *   npm run bench:scheduler -- --store postgres
 *
 * CLAIM_BUDGET=n sets the scheduler's `claimBudget` (tasks a claim hands over; default 20), to see
 * what the per-claim cost is against graphile-worker's local queue of 500.
 *
 * SQLite (default): a durable file; in the same run, the raw ceiling: as many single-row committed
 * UPDATEs with plain better-sqlite3 on a file with the same pragmas (WAL, synchronous NORMAL,
 * exclusive locking).
 * PostgreSQL: the server `TEST_DATABASE_URL` names, else an embedded one (as the tests find theirs);
 * in the same run and on the same server, graphile-worker as the peer (see `scheduler-peers.ts`).
 *
 *   npm run bench:scheduler -- --profile [--store postgres]
 *
 * adds where each task's time goes (`profile.ts`): this process's CPU by file and package and, on
 * PostgreSQL (a private server with pg_stat_statements), each statement's time per task, for the
 * run phase of ours and of graphile-worker.
 */
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { openFeed } from '../src/feed/open-feed.ts';
import { createScheduler } from '../src/scheduler/scheduler.ts';
import { createDeriver } from '../src/service/deriver.ts';
import { createStatusEngine } from '../src/status/status-engine.ts';
import { openStore } from '../src/store/open-store.ts';
import { startPostgres, startPrivatePostgres } from '../test/support/postgres-server.ts';
import { type Probe, probe, STATEMENT_STATS } from './profile.ts';
import { benchDir, report, round } from './util.ts';

const TASKS = Number(process.env.TASKS ?? 100_000);
const UNITS = Number(process.env.UNITS ?? 1_000);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 8);
const perUnit = Math.ceil(TASKS / UNITS);
const dir = benchDir();

async function scheduler(url: string, probe?: Probe): Promise<number> {
  const store = await openStore(url);
  const feed = await openFeed(url, store);
  const status = createStatusEngine({ store, feed });
  const deriver = createDeriver({ store });
  await deriver.upsertWorkspace({ id: 'default', settings: { summariesEnabled: false } });
  const enqueueStart = performance.now();
  for (let u = 0; u < UNITS; u++) {
    await deriver.upsertSession({ id: `s${u}`, peers: [{ peerId: `p${u}` }] });
    for (let sent = 0; sent < perUnit; sent += 100) {
      const n = Math.min(100, perUnit - sent);
      await deriver.addMessages({
        sessionId: `s${u}`,
        messages: Array.from({ length: n }, () => ({ peerId: `p${u}`, content: 'hello' })),
      });
    }
  }
  const enqueueMs = performance.now() - enqueueStart;
  const total = (await status.get({ workspaceId: 'default' })).totalWorkUnits;
  report({ bench: 'scheduler', phase: 'enqueue', tasks: total, ms: round(enqueueMs, 1) });

  const all = await status.watch({ workspaceId: 'default' });
  const done = new Promise<void>((resolve) => {
    status.events.on('status:changed', () => {
      if (all.counts().completedWorkUnits === total) resolve();
    });
  });
  const scheduler = createScheduler({
    store,
    concurrency: CONCURRENCY,
    ...(process.env.CLAIM_BUDGET ? { claimBudget: Number(process.env.CLAIM_BUDGET) } : {}),
    handlers: { representation: () => {}, summary: () => {} },
  });
  // What the change feed carries while tasks run (on PostgreSQL: NOTIFYs every instance hears).
  let messages = 0;
  let unitChanges = 0;
  let payloadBytes = 0;
  feed.events.on('changes', (changes) => {
    messages++;
    unitChanges += changes.units.length;
    // The NOTIFY payload's size as the trigger writes it (migration 004): a header and one array a unit.
    payloadBytes += 40;
    for (const { unitId, key, delta } of changes.units)
      payloadBytes += JSON.stringify([unitId, ...Object.values(key), ...Object.values(delta)]).length + 1;
  });
  await probe?.start();
  const cpuStart = process.cpuUsage();
  const start = performance.now();
  scheduler.start();
  await done;
  const ms = performance.now() - start;
  const cpu = process.cpuUsage(cpuStart);
  const profile = await probe?.stop(total);
  await scheduler.stop();
  status.close();
  await feed.close();
  await store.close();
  const perSecond = total / (ms / 1000);
  report({
    bench: 'scheduler',
    phase: 'run',
    tasks: total,
    concurrency: CONCURRENCY,
    ms: round(ms, 1),
    cpuMsPerTask: round((cpu.user + cpu.system) / 1000 / total, 4),
    feedMessagesPerTask: round(messages / total, 3),
    unitChangesPerMessage: round(unitChanges / Math.max(1, messages), 2),
    feedPayloadBytesPerTask: round(payloadBytes / total, 1),
    tasksPerSecond: Math.round(perSecond),
    ...(profile ? { profile } : {}),
  });
  return perSecond;
}

function ceiling(): number {
  const db = new Database(dir.path('ceiling.db'));
  db.pragma('locking_mode = EXCLUSIVE');
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)');
  const insert = db.prepare('INSERT INTO t (id, n) VALUES (?, 0)');
  db.transaction(() => {
    for (let i = 0; i < UNITS; i++) insert.run(i);
  })();
  const update = db.prepare('UPDATE t SET n = n + 1 WHERE id = ?');
  const start = performance.now();
  for (let i = 0; i < TASKS; i++) update.run(i % UNITS); // autocommit: one committed transaction each
  const ms = performance.now() - start;
  db.close();
  const perSecond = TASKS / (ms / 1000);
  report({
    bench: 'scheduler',
    phase: 'ceiling',
    updates: TASKS,
    ms: round(ms, 1),
    perSecond: Math.round(perSecond),
  });
  return perSecond;
}

const { store: backend, profile } = parseArgs({
  options: { store: { type: 'string', default: 'sqlite' }, profile: { type: 'boolean', default: false } },
}).values;

try {
  if (backend === 'postgres') {
    const server = profile ? await startPrivatePostgres(STATEMENT_STATS) : await startPostgres();
    try {
      const url = new URL(server.url);
      url.searchParams.set('schema', `bench_${process.pid}`);
      const tasksPerSecond = await scheduler(url.toString(), profile ? probe(server.url) : undefined);
      const { bullmq, graphileWorker } = await import('./scheduler-peers.ts');
      const shape = { tasks: TASKS, units: UNITS, concurrency: CONCURRENCY };
      const peer = await graphileWorker(server.url, shape, profile ? probe(server.url) : undefined);
      const graphileWorkerPerSecond = peer.perSecond;
      report({
        bench: 'scheduler-pg',
        phase: 'graphile-worker',
        jobsPerSecond: Math.round(graphileWorkerPerSecond),
        ...(peer.profile ? { profile: peer.profile } : {}),
      });
      const bullmqPerSecond = await bullmq(shape);
      report({ bench: 'scheduler-pg', phase: 'bullmq', jobsPerSecond: Math.round(bullmqPerSecond) });
      report({
        bench: 'scheduler-pg',
        tasksPerSecond: Math.round(tasksPerSecond),
        graphileWorkerPerSecond: Math.round(graphileWorkerPerSecond),
        bullmqPerSecond: Math.round(bullmqPerSecond),
        ratio: round(tasksPerSecond / graphileWorkerPerSecond, 2),
      });
    } finally {
      await server.stop();
    }
  } else {
    const tasksPerSecond = await scheduler(`file:${dir.path('scheduler.db')}`, profile ? probe() : undefined);
    const ceilingPerSecond = ceiling();
    report({
      bench: 'scheduler',
      tasksPerSecond: Math.round(tasksPerSecond),
      ceilingPerSecond: Math.round(ceilingPerSecond),
      ratio: round(tasksPerSecond / ceilingPerSecond, 2),
    });
  }
} finally {
  dir.remove();
}
