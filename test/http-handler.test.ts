/**
 * A deriver in another language (SPEC section 10), for real: the example Python worker under
 * `examples/` as a child process, Deriver Live POSTing tasks to it over HTTP.
 */
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createDeriverClient, type DeriverClient } from '../src/client/index.ts';
import type { TaskRow } from '../src/store/store.ts';
import { tempDir } from './helpers.ts';
import { startTestServer, type TestServer } from './server-helpers.ts';
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

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const address = probe.address();
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

const byId = (rows: readonly TaskRow[]) => new Map(rows.map((r) => [String(r.id), r]));

describe('HANDLER_URL: a deriver in Python', () => {
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

  it('a worker that checks signatures refuses a wrongly signed task: it fails for good with the reason', async () => {
    const temp = tempDir();
    cleanups.push(() => temp.remove());
    const python = await worker({ output: temp.path('out.jsonl'), secret: SECRET });
    const s = await server(python.url, 'not-the-secret-the-worker-knows');
    const c = client(s);
    await c.upsertSession({ id: 'chat', peers: [{ peerId: 'alice' }] });
    await c.addMessages({ sessionId: 'chat', messages: [{ peerId: 'alice', content: 'hi' }] });
    const final = await c.waitForIdle({ sessionId: 'chat' }, { timeoutMs: 20_000 });
    expect(final).toMatchObject({ totalWorkUnits: 1, failedWorkUnits: 1 });
    const [row] = await s.app.store.listTasks();
    expect(row).toMatchObject({
      runs: 1,
      lastError: 'invalid signature: check HANDLER_SECRET on both sides',
    });
    expect(python.records()).toEqual([]);
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
