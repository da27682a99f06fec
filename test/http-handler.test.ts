/**
 * A deriver in another language (SPEC section 10), for real: the example Python worker under
 * `examples/` as a child process, Deriver Live POSTing tasks to it over HTTP.
 */
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createDeriverClient, type DeriverClient } from '../src/client/index.ts';
import type { TaskRow } from '../src/store/store.ts';
import { tempDir } from './helpers.ts';
import { startTestServer, type TestServer } from './server-helpers.ts';
import { freePort } from './support/processes.ts';
import { type PythonWorker, startPythonWorker } from './support/python-worker.ts';

const SECRET = 'a-shared-secret-for-the-python-worker';

let cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
});

async function worker(options: Parameters<typeof startPythonWorker>[0]): Promise<PythonWorker> {
  const started = await startPythonWorker(options);
  cleanups.push(() => started.stop());
  return started;
}

async function server(handlerUrl: string, secret: string | null, maxAttempts = 3): Promise<TestServer> {
  const started = await startTestServer({
    config: { handlerUrl, handlerSecret: secret, taskTimeoutMs: 1_000, maxAttempts, workerConcurrency: 4 },
    scheduler: { retryBaseMs: 50, retryMaxMs: 200 },
  });
  cleanups.push(() => started.close());
  return started;
}

function client(s: TestServer): DeriverClient {
  const c = createDeriverClient({ url: s.url });
  cleanups.push(() => c.close());
  return c;
}

const byId = (rows: readonly TaskRow[]) => new Map(rows.map((r) => [String(r.id), r]));

describe('HANDLER_URL: a deriver in Python', () => {
  it('takes batches: {tasks: [...]} in order, a partial answer, a 429 pausing without a failure, a rejected task failing alone', async () => {
    const temp = tempDir();
    cleanups.push(() => temp.remove());
    const python = await worker({ output: temp.path('out.jsonl') });
    const started = await startTestServer({
      config: {
        handlerUrl: python.url,
        maxAttempts: 1, // a 429 or a put-back counted as an attempt would fail a task at once
        workerConcurrency: 2,
        taskTypes: {
          batches: { representation: { maxTasks: 3, maxTokens: 1_000_000, maxWaitMs: 0 } },
          limits: {},
        },
      },
    });
    cleanups.push(() => started.close());
    const c = client(started);
    await c.upsertWorkspace({ id: 'default', settings: { summariesEnabled: false } });
    await c.upsertSession({ id: 'chat', peers: [{ peerId: 'alice' }] });
    const rateLimited: string[] = [];
    started.app.scheduler.events.on('type:rate-limited', ({ type, error }) => {
      rateLimited.push(`${type}: ${error}`);
    });
    const contents = ['one #limited', 'two', 'three', 'four #reject', 'five', 'six'];
    await c.addMessages({
      sessionId: 'chat',
      messages: contents.map((content) => ({ peerId: 'alice', content })),
    });
    const final = await c.waitForIdle({ sessionId: 'chat' }, { timeoutMs: 30_000 });
    expect(final).toMatchObject({ totalWorkUnits: 6, completedWorkUnits: 6, failedWorkUnits: 1 });
    const rows = await started.app.store.listTasks();
    // Only the rejected task failed (alone, not its batch); the 429 and the partial answers counted nothing.
    expect(rows.map((r) => [r.payload.seq, r.state, r.failures])).toEqual([
      [1, 'succeeded', 0],
      [2, 'succeeded', 0],
      [3, 'succeeded', 0],
      [4, 'failed', 1],
      [5, 'succeeded', 0],
      [6, 'succeeded', 0],
    ]);
    expect(rows[3]?.lastError).toBe('cannot derive anything from a message marked #reject');
    // The first batch met the 429 (Retry-After: 1) and paused the type.
    expect(rateLimited).toEqual([
      'representation: the handler at ' +
        new URL(python.url).origin +
        ' is rate limited (HTTP 429: the model provider is rate limited)',
    ]);
    const records = python.records();
    // Each task done once, in order, and in batches.
    expect(records.map((r) => r.seqs[0])).toEqual([1, 2, 3, 5, 6]);
    expect(records.every((r) => r.batch !== null && r.batch >= 1)).toBe(true);
    expect(Math.max(...records.map((r) => r.batch ?? 0))).toBe(3);
  }, 60_000);

  it('runs every task there: contents and summary ranges sent, signed, 2xx/4xx/5xx/timeout mapped, unit order kept, connections reused', async () => {
    const temp = tempDir();
    cleanups.push(() => temp.remove());
    const python = await worker({ output: temp.path('out.jsonl'), secret: SECRET, slowSeconds: 3 });
    const s = await server(python.url, SECRET);
    const c = client(s);
    await c.upsertWorkspace({ id: 'default', settings: { messagesPerShortSummary: 4 } });
    await c.upsertSession({
      id: 'chat',
      peers: [
        { peerId: 'alice', observeOthers: true },
        { peerId: 'bob', observeOthers: true },
      ],
    });
    const contents = [
      'hello there bob',
      'hi alice #flaky',
      'and a fine one',
      'a slow one #slow',
      'this one is #reject',
      'the last word',
    ];
    await c.addMessages({
      sessionId: 'chat',
      messages: contents.map((content, i) => ({ peerId: i % 2 === 0 ? 'alice' : 'bob', content })),
    });
    const final = await c.waitForIdle({ sessionId: 'chat' }, { timeoutMs: 30_000 });

    // 6 messages x 2 observers + 1 summary (at seq 4).
    expect(final).toMatchObject({ totalWorkUnits: 13, completedWorkUnits: 13, failedWorkUnits: 2 });
    const rows = byId(await s.app.store.listTasks());
    const records = python.records();
    // #reject (seq 5) fails for good for both observers, with the worker's answer as the error.
    const failed = [...rows.values()].filter((r) => r.state === 'failed');
    expect(failed.map((r) => [r.payload.seq, r.runs, r.lastError])).toEqual([
      [5, 1, 'cannot derive anything from a message marked #reject'],
      [5, 1, 'cannot derive anything from a message marked #reject'],
    ]);
    // #flaky (503) and #slow (timed out) succeed on their second attempt.
    for (const seq of [2, 4]) {
      const done = records.filter((r) => r.type === 'representation' && r.seqs[0] === seq);
      expect(done.map((r) => r.attempt)).toEqual([2, 2]);
    }
    const slowRow = [...rows.values()].find(
      (r) => r.payload.seq === 4 && r.key.taskType === 'representation',
    );
    expect(slowRow?.lastError).toMatch(/timed out/);
    // Contents arrive: word counts derived from the exact message text.
    const first = records.find((r) => r.seqs[0] === 1 && r.observerId === 'bob');
    expect(Object.values(first?.words ?? {})).toEqual([3]);
    // The summary carries its range and the messages of that range (with #flaky: a second attempt).
    const summary = records.find((r) => r.type === 'summary');
    expect(summary).toMatchObject({
      observerId: null,
      senderId: null,
      attempt: 2,
      summary: { level: 'short', fromSeq: 1, toSeq: 4 },
      seqs: [1, 2, 3, 4],
    });
    // Each task done once, and per unit in creation order.
    expect(new Set(records.map((r) => r.taskId)).size).toBe(records.length);
    const units = new Map<string, number[]>();
    for (const r of records) {
      const unit = `${r.type}:${r.observerId}<${r.senderId}`;
      units.set(unit, [...(units.get(unit) ?? []), Number(r.taskId)]);
    }
    for (const ids of units.values()) expect(ids).toEqual([...ids].sort((a, b) => a - b));
    // Kept-alive connections: far fewer than requests, never more than the concurrency.
    const connections = new Set(records.map((r) => r.connection));
    expect(connections.size).toBeLessThanOrEqual(4);
    expect(connections.size).toBeLessThan(records.length);
  }, 60_000);

  it('a worker that refuses our signature (401) pauses dispatch: tasks stay pending, /readyz and a metric say why, one error line; fixed, everything runs', async () => {
    const temp = tempDir();
    cleanups.push(() => temp.remove());
    const port = await freePort();
    let python = await worker({ output: temp.path('out.jsonl'), secret: SECRET, port });
    const lines: { level: number; msg: string; error?: string }[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const wrongSecret = 'not-the-secret-the-worker-knows';
    const s = await startTestServer({
      config: { handlerUrl: python.url, handlerSecret: wrongSecret, workerConcurrency: 4, maxAttempts: 3 },
      logger,
    });
    cleanups.push(() => s.close());
    const c = client(s);
    await c.upsertSession({
      id: 'chat',
      peers: [{ peerId: 'alice', observeOthers: true }, { peerId: 'bob' }],
    });
    await c.addMessages({
      sessionId: 'chat',
      messages: Array.from({ length: 12 }, (_, i) => ({ peerId: i % 2 ? 'bob' : 'alice', content: `m${i}` })),
    });
    const readyz = async () => {
      const response = await fetch(s.url.replace('/graphql', '/readyz'));
      return {
        status: response.status,
        body: (await response.json()) as { checks: Record<string, { ok: boolean; error?: string }> },
      };
    };
    await expect.poll(async () => (await readyz()).status).toBe(503);
    expect((await readyz()).body.checks.handler?.error).toMatch(
      /dispatch paused since .*refused the request with HTTP 401 \(invalid signature: check HANDLER_SECRET on both sides\): check that HANDLER_SECRET is the secret the handler verifies with/,
    );
    const metrics = await (await fetch(s.url.replace('/graphql', '/metrics'))).text();
    expect(metrics).toMatch(/^deriver_dispatch_paused 1$/m);
    const paused = await c.getDeriverStatus({ sessionId: 'chat' });
    expect(paused).toMatchObject({ failedWorkUnits: 0, retryingWorkUnits: 0, completedWorkUnits: 0 });
    expect(paused.pendingWorkUnits + paused.inProgressWorkUnits).toBe(paused.totalWorkUnits);
    expect(lines.filter((line) => line.level >= 50)).toEqual([
      expect.objectContaining({
        msg: 'the handler refuses this service: dispatch paused, tasks stay pending',
      }),
    ]);
    expect(python.records()).toEqual([]);

    // The operator fixes the worker's secret (restarted on the same port): the pause ends by itself.
    await python.stop();
    python = await worker({ output: temp.path('out2.jsonl'), secret: wrongSecret, port });
    const final = await c.waitForIdle({ sessionId: 'chat' }, { timeoutMs: 60_000 });
    expect(final).toMatchObject({ totalWorkUnits: paused.totalWorkUnits, failedWorkUnits: 0 });
    expect(final.completedWorkUnits).toBe(paused.totalWorkUnits);
    expect((await readyz()).status).toBe(200);
    expect(await (await fetch(s.url.replace('/graphql', '/metrics'))).text()).toMatch(
      /^deriver_dispatch_paused 0$/m,
    );
    expect(lines.filter((line) => line.level >= 50)).toHaveLength(1);
    expect(lines.some((line) => line.msg === 'the handler accepts tasks again: dispatch resumed')).toBe(true);
  }, 90_000);

  it('other 4xx answers stay final for the task', async () => {
    const refusing = createHttpServer((request, response) => {
      request.resume();
      request.on('end', () => response.writeHead(422).end('this message cannot be derived'));
    });
    await new Promise<void>((resolve) => refusing.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => refusing.close(() => resolve())));
    const s = await server(`http://127.0.0.1:${(refusing.address() as AddressInfo).port}/`, null);
    const c = client(s);
    await c.upsertSession({ id: 'chat', peers: [{ peerId: 'alice' }] });
    await c.addMessages({ sessionId: 'chat', messages: [{ peerId: 'alice', content: 'hi' }] });
    const final = await c.waitForIdle({ sessionId: 'chat' }, { timeoutMs: 20_000 });
    expect(final).toMatchObject({ totalWorkUnits: 1, failedWorkUnits: 1 });
    const [row] = await s.app.store.listTasks();
    expect(row).toMatchObject({ runs: 1, lastError: 'this message cannot be derived' });
  }, 30_000);

  it('a worker that is down for a while: attempts are retried (and counted as retrying) until it is up', async () => {
    const temp = tempDir();
    cleanups.push(() => temp.remove());
    const port = await freePort();
    const s = await server(`http://127.0.0.1:${port}/`, SECRET, 20);
    const c = client(s);
    await c.upsertSession({ id: 'chat', peers: [{ peerId: 'alice' }] });
    await c.addMessages({
      sessionId: 'chat',
      messages: [1, 2, 3].map((n) => ({ peerId: 'alice', content: `message ${n}` })),
    });
    // Nothing listens: the head task fails its attempts and waits for retries.
    const stream = c.watchDeriverStatus({ sessionId: 'chat' }, { coalesceMs: 0 });
    for await (const status of stream) if (status.retryingWorkUnits === 1) break;
    const [head] = await s.app.store.listTasks({ state: 'pending' });
    expect(head?.lastError).toMatch(/could not reach the handler at http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/);

    const python = await worker({ output: temp.path('out.jsonl'), secret: SECRET, port });
    const final = await c.waitForIdle({ sessionId: 'chat' }, { timeoutMs: 20_000 });
    expect(final).toMatchObject({ totalWorkUnits: 3, completedWorkUnits: 3, failedWorkUnits: 0 });
    expect(python.records().map((r) => r.seqs[0])).toEqual([1, 2, 3]);
  }, 30_000);
});
