/**
 * Message ingest from outside, server and load generator (autocannon) in separate processes on
 * loopback, in one run; the server is `npm start`'s (the compiled bundle, built first when the
 * sources are newer): the server's floor (`{ __typename }`), the status query, `addMessages` with
 * one message, and with 100. The server runs no workers (WORKER_CONCURRENCY=0), so only ingest is
 * measured, and no mutation rate limit.
 *
 *   npm run bench:ingest          (INGEST_SECONDS=8 per phase, INGEST_CONNECTIONS=100)
 *
 * BENCH_PROFILE_DIR=dir writes the server's CPU profile there.
 *
 * Last line: {"bench":"ingest","floorPerSecond","statusPerSecond","addMessage1PerSecond",
 * "batchedMessagesPerSecond","ratio"} with ratio = addMessage1PerSecond / floorPerSecond.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { benchDir, report, round } from './util.ts';

const SECONDS = Number(process.env.INGEST_SECONDS ?? 8);
const CONNECTIONS = Number(process.env.INGEST_CONNECTIONS ?? 100);
const dir = benchDir();
const start = fileURLToPath(new URL('../scripts/start.js', import.meta.url));
const server = spawn(
  process.execPath,
  [
    ...(process.env.BENCH_PROFILE_DIR
      ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE_DIR}`]
      : []),
    start,
    '--port',
    '0',
    '--worker-concurrency',
    '0',
    '--log-level',
    'warn',
  ],
  {
    env: { ...process.env, DATABASE_URL: `file:${dir.path('ingest.db')}`, MUTATIONS_PER_SECOND: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  },
);
const url = await new Promise<string>((resolve, reject) => {
  let out = '';
  server.stdout?.on('data', (chunk) => {
    out += chunk;
    const match = /listening on (\S+)/.exec(out);
    if (match?.[1]) resolve(match[1]);
  });
  server.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
});

async function gql(query: string): Promise<void> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query }),
  });
  const body = (await response.json()) as { errors?: unknown };
  if (body.errors) throw new Error(JSON.stringify(body.errors));
}
await gql('mutation{upsertWorkspace(id:"default",settings:{summariesEnabled:false}){id}}');
await gql('mutation{upsertSession(id:"s",peers:[{peerId:"alice"}]){id}}');

/** Messages as a client sends them: in variables, as the typed client does. */
const messages = (n: number) =>
  Array.from({ length: n }, (_, i) => ({ peerId: 'alice', content: `hello ${i}` }));
const ADD =
  'mutation Add($m: [MessageInput!]!) { addMessages(sessionId: "s", messages: $m) { enqueuedTasks } }';

async function phase(
  name: string,
  query: string,
  variables?: Record<string, unknown>,
): Promise<{ perSecond: number; p99Ms: number }> {
  const result = await autocannon({
    url,
    connections: CONNECTIONS,
    duration: SECONDS,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  const failed = result.errors + result.timeouts + result.non2xx;
  const perSecond = result.requests.average;
  report({
    bench: 'ingest',
    phase: name,
    connections: CONNECTIONS,
    seconds: SECONDS,
    requests: result.requests.total,
    requestsPerSecond: round(perSecond, 0),
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    failed,
  });
  if (failed > 0) throw new Error(`${name}: ${failed} requests failed`);
  return { perSecond, p99Ms: result.latency.p99 };
}

try {
  const floor = await phase('floor', '{ __typename }');
  const status = await phase(
    'status',
    '{ deriverStatus(sessionId: "s") { totalWorkUnits pendingWorkUnits } }',
  );
  const add1 = await phase('addMessages-1', ADD, { m: messages(1) });
  const add100 = await phase('addMessages-100', ADD, { m: messages(100) });
  report({
    bench: 'ingest',
    floorPerSecond: round(floor.perSecond, 0),
    statusPerSecond: round(status.perSecond, 0),
    statusRatio: round(status.perSecond / floor.perSecond, 2),
    addMessage1PerSecond: round(add1.perSecond, 0),
    addMessage1P99Ms: add1.p99Ms,
    batchedMessagesPerSecond: round(add100.perSecond * 100, 0),
    ratio: round(add1.perSecond / floor.perSecond, 2),
  });
} finally {
  server.kill('SIGTERM');
  await new Promise((resolve) => server.once('exit', resolve));
  dir.remove();
}
