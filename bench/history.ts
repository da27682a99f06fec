/**
 * History of any size: start-up, memory and status latency of `npm start`'s server on a store
 * holding 100k, 1M and 10M work units of finished history (bulk SQL, `history-fill.ts`: 1,000
 * workspaces, sessions of 3 peers with 9 units each, every unit 5 tasks done) plus 10k active units
 * with a pending task each, on SQLite and PostgreSQL.
 *
 *   npm run bench:history
 *   SIZES=100000,1000000 STORES=sqlite QUERIES=300 npm run bench:history
 *
 * For each store: seconds from `npm start` (the compiled server) to `/readyz` answering 200 on a new
 * store (`new`: it creates its tables) and on that store again (`empty`). For each size: the same
 * on the filled store, its RSS
 * then (MB), status p50/p99 over HTTP (one kept-alive connection) for a session, a peer (as
 * observer) and a whole workspace (counts, and with its per-session breakdown), each cold (a
 * filter never asked before: one read of the store's indexed sums) and warm (asked again: from
 * memory, after the feed's read barrier), and the time to the first event of a new subscription
 * over SSE; beside them, in the same run on the same connection, the server's floor: `{ __typename }`.
 * PostgreSQL: the server TEST_DATABASE_URL names, else a private one (as the tests).
 * Summary keys: `startSeconds` (by store, then `new`, `empty` and each size), `rssMb`, `p99Ms` (by
 * store, size, filter, cold/warm), `floorP99Ms`, `firstEventMs`.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { Agent, request } from 'node:http';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { startPostgres } from '../test/support/postgres-server.ts';
import { listeningUrl, rssMb } from '../test/support/processes.ts';
import { fillHistory, peerOf, sessionOf, WORKSPACES, workspaceOf } from './history-fill.ts';
import { benchDir, percentile, report, round } from './util.ts';

const SIZES = (process.env.SIZES ?? '100000,1000000,10000000').split(',').map(Number);
const STORES = (process.env.STORES ?? 'sqlite,postgres').split(',');
const QUERIES = Number(process.env.QUERIES ?? 300);
const ACTIVE = Number(process.env.ACTIVE ?? 10_000);
const ROOT = fileURLToPath(new URL('..', import.meta.url));

const label = (n: number) => (n >= 1e6 ? `${n / 1e6}m` : `${n / 1e3}k`);

async function startServer(
  databaseUrl: string,
): Promise<{ child: ChildProcess; url: string; seconds: number }> {
  const started = performance.now();
  const child = spawn('npm', ['start', '--silent'], {
    cwd: ROOT,
    env: { ...process.env, PORT: '0', DATABASE_URL: databaseUrl, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await listeningUrl(child);
  const readyz = url.replace(/\/graphql$/, '/readyz');
  while ((await fetch(readyz).catch(() => null))?.status !== 200) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return { child, url, seconds: (performance.now() - started) / 1000 };
}

const agent = new Agent({ keepAlive: true, maxSockets: 1 });
function post(url: string, query: string): Promise<number> {
  const body = JSON.stringify({ query });
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = request(url, {
      method: 'POST',
      agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    });
    req.on('response', (res) => {
      let text = '';
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => {
        if (!text.includes('"data"') || text.includes('"errors"')) reject(new Error(text));
        else resolve(performance.now() - started);
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Time to the first SSE event of a new subscription, in ms. */
async function firstEvent(url: string, filter: string): Promise<number> {
  const started = performance.now();
  const query = encodeURIComponent(`subscription { deriverStatus(${filter}) { totalWorkUnits } }`);
  const response = await fetch(`${url}?query=${query}`, { headers: { accept: 'text/event-stream' } });
  const reader = response.body!.getReader();
  let text = '';
  while (!text.includes('data:')) text += new TextDecoder().decode((await reader.read()).value);
  const ms = performance.now() - started;
  await reader.cancel();
  return ms;
}

const stats = (samples: number[]) => {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: round(percentile(sorted, 50), 2), p99: round(percentile(sorted, 99), 2) };
};

const summary = {
  bench: 'history',
  startSeconds: {} as Record<string, Record<string, number>>,
  rssMb: {} as Record<string, Record<string, number>>,
  p99Ms: {} as Record<string, Record<string, Record<string, { cold: number; warm: number }>>>,
  firstEventMs: {} as Record<string, Record<string, number>>,
  floorP99Ms: {} as Record<string, Record<string, number>>,
};

async function stopServer(child: ChildProcess): Promise<void> {
  child.kill('SIGTERM');
  await new Promise((resolve) => child.once('exit', resolve));
}

/** Start-up on a new store (it creates its tables), then on the same store again. */
async function measureEmpty(store: string, databaseUrl: string): Promise<void> {
  for (const key of ['new', 'empty']) {
    const server = await startServer(databaseUrl);
    put(summary.startSeconds, store, key, round(server.seconds, 2));
    report({ bench: 'history', store, size: 0, phase: key, startSeconds: round(server.seconds, 2) });
    await stopServer(server.child);
  }
}

/** `table[store][size] = value`. */
function put<T>(table: Record<string, Record<string, T>>, store: string, size: string, value: T): void {
  table[store] = { ...table[store], [size]: value };
}

async function measure(store: string, size: number, databaseUrl: string): Promise<void> {
  const fillStart = performance.now();
  const sessions = await fillHistory(databaseUrl, { units: size, active: ACTIVE });
  report({
    bench: 'history',
    store,
    size,
    phase: 'fill',
    seconds: round((performance.now() - fillStart) / 1000, 1),
  });
  const server = await startServer(databaseUrl);
  const rss = rssMb(server.child.pid ?? 0);
  const filters: Record<string, (i: number) => string> = {
    session: (i) => `workspaceId: "${workspaceOf(i)}", sessionId: "${sessionOf(i)}"`,
    peer: (i) => `workspaceId: "${workspaceOf(i)}", observerId: "${peerOf(i, 1)}"`,
    workspace: (i) => `workspaceId: "${workspaceOf(i)}"`,
  };
  // Warm-up, not counted: the server's first requests run cold code (JIT), whatever the store.
  for (let q = 0; q < 300; q++) {
    await post(server.url, '{ deriverStatus(workspaceId: "w0") { totalWorkUnits } }');
    await post(server.url, '{ __typename }');
  }
  const floor: number[] = [];
  for (let q = 0; q < QUERIES; q++) floor.push(await post(server.url, '{ __typename }'));
  const floorStats = stats(floor);
  report({ bench: 'history', store, size, filter: 'floor', floorMs: floorStats });
  const latencies: Record<string, { cold: number; warm: number }> = {};
  let offset = 1; // session 0's workspace (w0) was warmed up
  for (const [kind, filter] of Object.entries(filters)) {
    for (const breakdown of kind === 'workspace' ? [false, true] : [false]) {
      const name = breakdown ? 'workspaceSessions' : kind;
      const fields = breakdown ? 'totalWorkUnits sessions { sessionId totalWorkUnits }' : 'totalWorkUnits';
      const count = kind === 'workspace' ? Math.min(QUERIES, WORKSPACES / 2) : QUERIES;
      const cold: number[] = [];
      const warm: number[] = [];
      for (let q = 0; q < count; q++) {
        // A filter nobody asked for yet: distinct sessions (and so workspaces, peers) each time.
        const i = (offset + q * 7919) % sessions;
        const query = `{ deriverStatus(${filter(i)}) { ${fields} } }`;
        cold.push(await post(server.url, query));
        warm.push(await post(server.url, query));
      }
      offset += count;
      const c = stats(cold);
      const w = stats(warm);
      latencies[name] = { cold: c.p99, warm: w.p99 };
      report({ bench: 'history', store, size, filter: name, coldMs: c, warmMs: w });
    }
  }
  const firsts: number[] = [];
  for (let q = 0; q < 50; q++)
    firsts.push(await firstEvent(server.url, filters.session!((offset + q * 104_729) % sessions)));
  const first = stats(firsts);
  report({
    bench: 'history',
    store,
    size,
    startSeconds: round(server.seconds, 2),
    rssMb: round(rss, 1),
    firstEventMs: first,
  });
  const key = label(size);
  put(summary.startSeconds, store, key, round(server.seconds, 2));
  put(summary.rssMb, store, key, round(rss, 1));
  put(summary.p99Ms, store, key, latencies);
  put(summary.firstEventMs, store, key, first.p99);
  put(summary.floorP99Ms, store, key, floorStats.p99);
  await stopServer(server.child);
}

// `npm start` builds first when a source is newer than dist/: do that now, not inside a timing.
execFileSync('npm', ['start', '--silent', '--', '--help'], { cwd: ROOT, stdio: 'ignore' });
const dir = benchDir();
try {
  for (const store of STORES) {
    if (store === 'sqlite') {
      await measureEmpty(store, `file:${dir.path('history-empty.db')}`);
      for (const size of SIZES) await measure(store, size, `file:${dir.path(`history-${size}.db`)}`);
    } else {
      const server = await startPostgres();
      try {
        for (const size of [0, ...SIZES]) {
          const schema = `history_${randomUUID().slice(0, 8)}`;
          const url = new URL(server.url);
          url.searchParams.set('schema', schema);
          try {
            if (size === 0) await measureEmpty(store, url.toString());
            else await measure(store, size, url.toString());
          } finally {
            const admin = new pg.Client({ connectionString: server.url });
            await admin.connect();
            await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
            await admin.end();
          }
        }
      } finally {
        await server.stop();
      }
    }
  }
} finally {
  dir.remove();
  agent.destroy();
}
report(summary);
