/**
 * Push latency across instances (a phase of `npm run bench:live`; runs alone too:
 * `npx tsx bench/cross-instance.ts`). Two server processes on one PostgreSQL (TEST_DATABASE_URL, else
 * embedded): A serves the API only, B runs the tasks. SUBSCRIBERS (1,000) graphql-ws subscribers watch
 * one session on A and as many on B; messages go in through B one by one, each task taking 10 ms.
 * A state's commit time is when B's status engine saw it (`extensions.changedAt` of B's events); the
 * single-instance latency is B's subscribers' receipt minus that, the cross-instance latency A's
 * subscribers' receipt of the same state minus that. Prints one JSON line.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { type Client, createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { startPostgres } from '../test/support/postgres-server.ts';
import { listeningUrl } from '../test/support/processes.ts';
import { percentile, round } from './util.ts';

const SUBSCRIBERS = Number(process.env.SUBSCRIBERS_CROSS ?? 1_000);
const MESSAGES = 40;
const SERVER = fileURLToPath(new URL('./instance-server.ts', import.meta.url));
const COUNTS = 'totalWorkUnits completedWorkUnits inProgressWorkUnits pendingWorkUnits';
type Counts = Record<
  'totalWorkUnits' | 'completedWorkUnits' | 'inProgressWorkUnits' | 'pendingWorkUnits',
  number
>;
const now = () => performance.timeOrigin + performance.now();
const stateKey = (c: Counts) =>
  `${c.totalWorkUnits}/${c.completedWorkUnits}/${c.inProgressWorkUnits}/${c.pendingWorkUnits}`;

async function serve(env: Record<string, string>): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', SERVER], {
    env: {
      ...process.env,
      PORT: '0',
      LOG_LEVEL: 'silent',
      MAX_CONNECTIONS_PER_ADDRESS: '0',
      MUTATIONS_PER_SECOND: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await listeningUrl(child);
  return { child, url };
}

interface Received {
  readonly key: string;
  readonly changedAt: number;
  readonly receivedAt: number;
}

async function watchers(url: string, n: number): Promise<{ clients: Client[]; events: Received[] }> {
  const clients: Client[] = [];
  const events: Received[] = [];
  const snapshots: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const client = createClient({
      url: url.replace('http', 'ws'),
      webSocketImpl: WebSocket,
      retryAttempts: 0,
    });
    clients.push(client);
    let first = true;
    snapshots.push(
      new Promise<void>((resolve) => {
        client.subscribe<{ deriverStatus: Counts }>(
          { query: `subscription{deriverStatus(sessionId:"x",coalesceMs:0){${COUNTS}}}` },
          {
            next(result) {
              const receivedAt = now();
              if (first) {
                first = false;
                resolve();
                return;
              }
              const { changedAt } = result.extensions as { changedAt: number };
              events.push({ key: stateKey(result.data!.deriverStatus), changedAt, receivedAt });
            },
            error: (error) => console.error('subscription error', error),
            complete: () => {},
          },
        );
      }),
    );
  }
  await Promise.all(snapshots);
  return { clients, events };
}

async function post(url: string, query: string): Promise<void> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query }),
  });
  const body = (await response.json()) as { errors?: unknown[] };
  if (body.errors) throw new Error(JSON.stringify(body.errors));
}

export async function crossInstance(): Promise<
  { crossInstanceP99Ms: number; singleInstanceP99Ms: number } & Record<string, unknown>
> {
  const pg = await startPostgres();
  const database = new URL(pg.url);
  database.searchParams.set('schema', `bench_cross_${process.pid}`);
  const a = await serve({ DATABASE_URL: database.toString(), WORKER_CONCURRENCY: '0' });
  const b = await serve({ DATABASE_URL: database.toString(), WORKER_CONCURRENCY: '1', TASK_MS: '10' });
  try {
    await post(
      b.url,
      'mutation{upsertSession(id:"x",peers:[{peerId:"p"}],settings:{summariesEnabled:false}){id}}',
    );
    const onA = await watchers(a.url, SUBSCRIBERS);
    const onB = await watchers(b.url, SUBSCRIBERS);
    for (let i = 0; i < MESSAGES; i++) {
      await post(
        b.url,
        `mutation{addMessages(sessionId:"x",messages:[{peerId:"p",content:"m${i}"}]){enqueuedTasks}}`,
      );
      await sleep(40);
    }
    await sleep(1_000);
    const committedAt = new Map<string, number>();
    for (const e of onB.events)
      committedAt.set(e.key, Math.min(e.changedAt, committedAt.get(e.key) ?? Infinity));
    const single = onB.events
      .map((e) => e.receivedAt - (committedAt.get(e.key) ?? e.changedAt))
      .sort((x, y) => x - y);
    const cross = onA.events
      .filter((e) => committedAt.has(e.key))
      .map((e) => e.receivedAt - committedAt.get(e.key)!)
      .sort((x, y) => x - y);
    await Promise.all([...onA.clients, ...onB.clients].map((c) => c.dispose()));
    return {
      subscribersPerInstance: SUBSCRIBERS,
      singleInstanceEvents: single.length,
      crossInstanceEvents: cross.length,
      singleInstanceP50Ms: round(percentile(single, 50), 2),
      singleInstanceP99Ms: round(percentile(single, 99), 2),
      crossInstanceP50Ms: round(percentile(cross, 50), 2),
      crossInstanceP99Ms: round(percentile(cross, 99), 2),
    };
  } finally {
    for (const server of [a, b]) {
      server.child.kill('SIGTERM');
      await new Promise((resolve) => server.child.once('exit', resolve));
    }
    await pg.stop();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.stdout.write(
    `${JSON.stringify({ bench: 'live', phase: 'cross-instance', ...(await crossInstance()) })}\n`,
  );
}
