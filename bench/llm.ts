/**
 * A deriver that calls a language model, as real ones do (docs/benchmarks.md, "bench:llm"): a
 * simulated provider over HTTP (LATENCY_MS per call with jitter, HTTP 429 with Retry-After above RPM
 * requests in any sliding minute), a Honcho-shaped workload (sessions of 3 peers who all observe
 * each other, messages of about 50 tokens), with batching off and on and the rate limit off and on.
 *
 *   npm run bench:llm
 *   SESSIONS=5 MESSAGES=300 RPM=600 LATENCY_MS=200 CONCURRENCY=16 npm run bench:llm
 *
 * One JSON line per run, then a summary. Per run: tasks done per minute, handler calls per task,
 * 429s received, time to idle, and `limitUse`: throughput / (RPM x tasks per call) (1: the
 * provider's limit fully used). Summary keys: `callsPerTask` (batching on), `provider429s` (rate
 * limit set to the provider's), `tasksPerMinute` and `limitUse` (batching and rate limit on).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { startApp } from '../src/server/app.ts';
import { loadConfig } from '../src/server/config.ts';
import type { BatchPolicy } from '../src/store/queue-plan.ts';
import { benchDir, report, round } from './util.ts';

const SESSIONS = Number(process.env.SESSIONS ?? 5);
const MESSAGES = Number(process.env.MESSAGES ?? 300);
const RPM = Number(process.env.RPM ?? 600);
const LATENCY_MS = Number(process.env.LATENCY_MS ?? 200);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 16);
const BATCH: BatchPolicy = {
  maxTasks: 50,
  maxTokens: 512,
  maxWaitMs: Number(process.env.BATCH_WAIT_MS ?? 2_000),
};
const WINDOW_MS = 60_000;
const PEERS = ['user', 'assistant', 'moderator'];

/** The simulated provider: what it saw, and its HTTP server. */
function provider() {
  const seen: number[] = []; // start times of accepted calls in the last window
  const stats = { calls: 0, accepted: 0, rejected429: 0, tasks: 0 };
  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      stats.calls++;
      const now = Date.now();
      while (seen.length > 0 && (seen[0] ?? 0) <= now - WINDOW_MS) seen.shift();
      if (seen.length >= RPM) {
        stats.rejected429++;
        const retryAfter = Math.max(1, Math.ceil(((seen[0] ?? now) + WINDOW_MS - now) / 1000));
        response.writeHead(429, { 'retry-after': String(retryAfter), 'content-type': 'text/plain' });
        response.end('rate limit exceeded');
        return;
      }
      seen.push(now);
      stats.accepted++;
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { tasks?: unknown[] };
      const tasks = body.tasks?.length ?? 1;
      stats.tasks += tasks;
      const latency = LATENCY_MS * (0.75 + Math.random() * 0.5);
      setTimeout(() => {
        response.writeHead(200, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ completed: tasks }));
      }, latency);
    });
  });
  return { server, stats };
}

/** About 50 tokens (200 characters) of chat. */
const message = (i: number) => `message ${i}: ${'lorem ipsum dolor sit amet '.repeat(8)}`.slice(0, 200);

async function run(batching: boolean, rateLimited: boolean) {
  const { server, stats } = provider();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const dir = benchDir();
  const app = await startApp(
    {
      ...loadConfig({}),
      port: 0,
      databaseUrl: `file:${dir.path('llm.db')}`,
      workerConcurrency: CONCURRENCY,
      handlerUrl: `http://127.0.0.1:${port}/`,
      logLevel: 'silent',
      retentionMs: null,
      taskTypes: {
        batches: batching ? { representation: BATCH } : {},
        limits: rateLimited
          ? { representation: { rateLimit: { requests: RPM, intervalMs: WINDOW_MS } } }
          : {},
      },
    },
    { logger: pino({ level: 'silent' }), progressIntervalMs: 3_600_000 },
  );
  try {
    await app.deriver.upsertWorkspace({ id: 'default', settings: { summariesEnabled: false } });
    for (let s = 0; s < SESSIONS; s++) {
      await app.deriver.upsertSession({
        id: `s${s}`,
        peers: PEERS.map((peerId) => ({ peerId, observeOthers: true })),
      });
    }
    const watch = await app.status.watch({ workspaceId: 'default' });
    const started = performance.now();
    // Messages arrive as a chat's do: round-robin over sessions and speakers, a few at a time.
    for (let i = 0; i < MESSAGES; i += SESSIONS) {
      for (let s = 0; s < SESSIONS && i + s < MESSAGES; s++) {
        await app.deriver.addMessages({
          sessionId: `s${s}`,
          messages: [{ peerId: PEERS[(i / SESSIONS) % PEERS.length] ?? 'user', content: message(i + s) }],
        });
      }
    }
    await new Promise<void>((resolve) => {
      const check = () => {
        const c = watch.counts();
        if (c.totalWorkUnits > 0 && c.pendingWorkUnits === 0 && c.inProgressWorkUnits === 0) {
          off();
          resolve();
        }
      };
      const off = app.status.events.on('status:changed', check);
      check();
    });
    const ms = performance.now() - started;
    const counts = watch.counts();
    watch.release();
    const tasks = counts.completedWorkUnits;
    const tasksPerCall = stats.accepted > 0 ? stats.tasks / stats.accepted : 0;
    const tasksPerMinute = tasks / (ms / 60_000);
    const record = {
      bench: 'llm',
      batching,
      rateLimited,
      tasks,
      failed: counts.failedWorkUnits,
      calls: stats.calls,
      callsPerTask: round(stats.calls / tasks, 3),
      tasksPerCall: round(tasksPerCall, 2),
      provider429s: stats.rejected429,
      tasksPerMinute: round(tasksPerMinute, 0),
      limitUse: round(tasksPerMinute / (RPM * tasksPerCall), 3),
      secondsToIdle: round(ms / 1000, 1),
    };
    report(record);
    return record;
  } finally {
    await app.close();
    await new Promise((resolve) => server.close(resolve));
    dir.remove();
  }
}

report({ bench: 'llm', shape: { SESSIONS, MESSAGES, RPM, LATENCY_MS, CONCURRENCY, batch: BATCH } });
const plain = await run(false, false);
const limited = await run(false, true);
const batched = await run(true, false);
const both = await run(true, true);
report({
  bench: 'llm',
  summary: true,
  callsPerTask: batched.callsPerTask,
  provider429s: limited.provider429s + both.provider429s,
  tasksPerMinute: both.tasksPerMinute,
  limitUse: both.limitUse,
  unbatchedLimitUse: limited.limitUse,
  withoutLimit429s: plain.provider429s,
  targets: { callsPerTask: '<= 0.2', provider429s: 0, limitUse: '>= 0.9' },
});
