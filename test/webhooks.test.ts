/**
 * Durable webhooks (docs/webhooks.md) with real servers and receivers: a receiver that refuses the
 * first attempts gets every event, with the same id on its retries and a signature that checks; a
 * server SIGKILLed after the events committed delivers them after its restart; a receiver that never
 * answers does not hold the queue; private addresses are refused unless allowed.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterEach, expect, it } from 'vitest';
import { createDeriverClient } from '../src/client/index.ts';
import type { WebhookEventType } from '../src/domain/webhook-events.ts';
import { PermanentTaskError } from '../src/errors.ts';
import type { TaskHandler } from '../src/scheduler/options.ts';
import { createDeriver } from '../src/service/deriver.ts';
import { openStore } from '../src/store/open-store.ts';
import { PG_TYPES } from '../src/store/postgres/connection.ts';
import { applyReports, lockReported } from '../src/store/postgres/queue.ts';
import type { ClaimedUnit } from '../src/store/store.ts';
import { shownUrl } from '../src/webhooks/destination.ts';
import { deferred, tempDir } from './helpers.ts';
import { startTestServer, type TestServer } from './server-helpers.ts';
import { freePort, listeningUrl } from './support/processes.ts';
import { startPythonWorker } from './support/python-worker.ts';
import { POSTGRES, SQLITE, type StoreBackend } from './support/stores.ts';

const SECRET = 'a-webhook-secret-of-some-length';
const INSTANCE = fileURLToPath(new URL('./fixtures/instance.ts', import.meta.url));
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Received {
  readonly id: string;
  readonly type: string;
  readonly signature: string;
  readonly body: string;
  readonly accepted: boolean;
}

/** A receiver on `port` (0: any) that refuses its first `refuse` requests with 500 and can hang. */
async function receiver(options: { port?: number; refuse?: number; hang?: boolean } = {}) {
  const received: Received[] = [];
  const waiters: { test: () => boolean; resolve: () => void }[] = [];
  const open = new Set<ServerResponse>();
  const server: Server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const accepted = received.length >= (options.refuse ?? 0) && !options.hang;
      received.push({
        id: String(request.headers['x-deriver-event-id']),
        type: String(request.headers['x-deriver-event-type']),
        signature: String(request.headers['x-honcho-signature']),
        body,
        accepted,
      });
      for (const waiter of waiters.filter((w) => w.test())) waiter.resolve();
      if (options.hang) {
        open.add(response);
        return; // never answers
      }
      response.writeHead(accepted ? 200 : 500).end(accepted ? 'ok' : 'not now');
    });
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const response of open) response.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`;
  return {
    url,
    received,
    open,
    until: (test: () => boolean) =>
      new Promise<void>((resolve) => {
        if (test()) resolve();
        else waiters.push({ test, resolve });
      }),
  };
}

async function gql<T>(server: TestServer | { http: TestServer['http'] }, query: string): Promise<T> {
  const result = await server.http<T>(query);
  if (result.errors) throw new Error(JSON.stringify(result.errors));
  return result.data as T;
}

/** A server on a fresh store of `backend`, running `handler`, delivering to private addresses. */
async function startHookServer(backend: StoreBackend, handler: TaskHandler): Promise<TestServer> {
  const location = await backend.fresh();
  cleanups.push(location.dispose);
  const server = await startTestServer({
    handlers: { representation: handler, summary: handler },
    config: { webhookAllowPrivate: true, databaseUrl: location.url },
  });
  cleanups.push(() => server.close());
  return server;
}

/**
 * A server running `handler`, a receiver of `messages.derived`, a client, and session "chat" with
 * alice and bob (who observes her); no summaries.
 */
async function watchedChat(backend: StoreBackend, handler: TaskHandler) {
  const server = await startHookServer(backend, handler);
  const hooks = await receiver();
  const client = createDeriverClient({ url: server.url });
  cleanups.push(() => client.close());
  await gql(
    server,
    'mutation { upsertWorkspace(id: "default", settings: { summariesEnabled: false }) { id } }',
  );
  await gql(
    server,
    `mutation { createWebhook(url: "${hooks.url}", events: [MESSAGES_DERIVED], secret: "${SECRET}") { id } }`,
  );
  await client.upsertSession({
    id: 'chat',
    peers: [{ peerId: 'alice' }, { peerId: 'bob', observeOthers: true }],
  });
  return { server, hooks, client };
}

/** A store of `backend` (no server), a deriver on it, and an endpoint for `events`; no summaries. */
async function storeWithEndpoint(backend: StoreBackend, events: WebhookEventType[]) {
  const location = await backend.fresh();
  cleanups.push(location.dispose);
  const store = await openStore(location.url);
  cleanups.push(() => store.close());
  const deriver = createDeriver({ store });
  await deriver.upsertWorkspace({ id: 'default', settings: { summariesEnabled: false } });
  await store.createWebhook({
    workspaceId: 'default',
    url: 'https://hooks.example.com/x',
    events,
    secret: SECRET,
    maxPerWorkspace: 20,
  });
  return { location, store, deriver };
}

const accepted = (received: readonly Received[], type: string) =>
  received.filter((r) => r.accepted && r.type === type);

it.each([
  { name: 'sqlite', backend: SQLITE },
  { name: 'postgres', backend: POSTGRES },
])(
  'a receiver that refuses the first attempts gets every event, the same id on retries, signed ($name)',
  async ({ backend }) => {
    const handler: TaskHandler = ({ task }) => {
      if (task.messages.some((m) => m.content === 'bad')) throw new PermanentTaskError('cannot use this');
    };
    const server = await startHookServer(backend, handler);
    const hooks = await receiver({ refuse: 2 });
    await gql(
      server,
      'mutation { upsertWorkspace(id: "default", settings: { summariesEnabled: false }) { id } }',
    );
    const created = await gql<{ createWebhook: { id: string; events: string[] } }>(
      server,
      `mutation { createWebhook(url: "${hooks.url}", events: [QUEUE_EMPTY, SESSION_IDLE, TASK_FAILED], secret: "${SECRET}") { id events } }`,
    );
    expect(created.createWebhook.events).toEqual(['QUEUE_EMPTY', 'SESSION_IDLE', 'TASK_FAILED']);
    await gql(
      server,
      'mutation { upsertSession(id: "chat", peers: [{ peerId: "alice" }, { peerId: "bob", observeOthers: true }]) { id } }',
    );
    await gql(
      server,
      'mutation { addMessages(sessionId: "chat", messages: [{ peerId: "alice", content: "hi" }, { peerId: "alice", content: "bad" }]) { enqueuedTasks } }',
    );
    // Two units (alice's own, bob observing alice) drain; both "bad" tasks fail; the session goes idle.
    await hooks.until(
      () =>
        accepted(hooks.received, 'queue.empty').length === 2 &&
        accepted(hooks.received, 'task.failed').length === 2 &&
        accepted(hooks.received, 'session.idle').length === 1,
    );
    const refused = hooks.received.filter((r) => !r.accepted);
    expect(refused).toHaveLength(2);
    const acceptedIds = hooks.received.filter((r) => r.accepted).map((r) => r.id);
    // Each event accepted once; each refused attempt came again with the same id.
    expect(new Set(acceptedIds).size).toBe(acceptedIds.length);
    for (const r of refused) expect(acceptedIds).toContain(r.id);
    for (const r of hooks.received) {
      expect(r.signature).toBe(createHmac('sha256', SECRET).update(r.body).digest('hex'));
    }
    const empty = JSON.parse(
      accepted(hooks.received, 'queue.empty').find((r) => r.body.includes('"bob"'))!.body,
    );
    expect(empty).toEqual({
      type: 'queue.empty',
      data: {
        workspace_id: 'default',
        queue_type: 'representation',
        session_id: 'chat',
        observer: 'bob',
        observed: 'alice',
      },
      timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    });
    expect(JSON.parse(accepted(hooks.received, 'task.failed')[0]!.body).data).toMatchObject({
      session_id: 'chat',
      error: 'cannot use this',
    });
    // The endpoint's figures, once every attempt is recorded.
    await expect
      .poll(
        async () =>
          (
            await gql<{ webhooks: { pendingDeliveries: number }[] }>(
              server,
              '{ webhooks { pendingDeliveries } }',
            )
          ).webhooks[0]?.pendingDeliveries,
      )
      .toBe(0);
    const { webhooks } = await gql<{ webhooks: Record<string, unknown>[] }>(
      server,
      '{ webhooks { id url deliveredDeliveries failedDeliveries lastError } }',
    );
    expect(webhooks).toEqual([
      {
        id: created.createWebhook.id,
        url: hooks.url,
        deliveredDeliveries: 5,
        failedDeliveries: 0,
        lastError: 'HTTP 500: not now',
      },
    ]);
    // A test event goes to that endpoint alone; removing it drops it.
    await gql(server, `mutation { testWebhook(id: "${created.createWebhook.id}") { id } }`);
    await hooks.until(() => accepted(hooks.received, 'webhook.test').length === 1);
    await gql(server, `mutation { removeWebhook(id: "${created.createWebhook.id}") }`);
    expect((await gql<{ webhooks: unknown[] }>(server, '{ webhooks { id } }')).webhooks).toEqual([]);
  },
);

it.each([
  { name: 'sqlite', backend: SQLITE },
  { name: 'postgres', backend: POSTGRES },
])(
  'messages.derived: once per watched addMessages call, when its last task finishes ($name)',
  async ({ backend }) => {
    const release = deferred<void>();
    const handler: TaskHandler = async ({ task }) => {
      if (task.messages.some((m) => m.content === 'slow')) await release.promise;
      if (task.messages.some((m) => m.content === 'bad')) throw new PermanentTaskError('cannot use this');
    };
    const { server, hooks, client } = await watchedChat(backend, handler);
    const chat = client.session('chat');
    // Unwatched, and slow: the queue stays busy with it while the watched call finishes.
    const busy = await chat.addMessages([{ peerId: 'bob', content: 'slow' }]);
    expect(busy.watchId).toBeNull();
    const watched = await chat.addMessages(
      [
        { peerId: 'alice', content: 'hi' },
        { peerId: 'alice', content: 'bad' },
      ],
      { notifyWhenDerived: true },
    );
    expect(watched.watchId).toEqual(expect.any(String));
    await hooks.until(() => accepted(hooks.received, 'messages.derived').length === 1);
    const [event] = accepted(hooks.received, 'messages.derived');
    // Alice's own unit and bob observing alice: two tasks per message, the "bad" ones failed.
    expect(JSON.parse(event!.body)).toEqual({
      type: 'messages.derived',
      data: {
        workspace_id: 'default',
        session_id: 'chat',
        watch_id: watched.watchId,
        message_ids: watched.messages.map((m) => m.id),
        completed: 4,
        failed: 2,
      },
      timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    });
    expect(event!.signature).toBe(createHmac('sha256', SECRET).update(event!.body).digest('hex'));
    // Sent when its tasks finished, not when the queue emptied: bob's slow task still runs.
    expect((await client.getDeriverStatus()).inProgressWorkUnits).toBeGreaterThan(0);
    // Running a failed task again does not derive the call a second time.
    const retried = await gql<{ retryFailedTasks: { retriedTasks: number } }>(
      server,
      'mutation { retryFailedTasks(sessionId: "chat") { retriedTasks } }',
    );
    expect(retried.retryFailedTasks.retriedTasks).toBe(2);
    release.resolve();
    await client.waitForIdle();
    // A watched call that creates no task is derived at once.
    await client.upsertPeer({ id: 'quiet', observeMe: false });
    await client.upsertSession({ id: 'alone', peers: [{ peerId: 'quiet' }] });
    const none = await client.session('alone').addMessages([{ peerId: 'quiet', content: 'x' }], {
      notifyWhenDerived: true,
    });
    expect(none.enqueuedTasks).toBe(0);
    await hooks.until(() => accepted(hooks.received, 'messages.derived').length === 2);
    expect(JSON.parse(accepted(hooks.received, 'messages.derived')[1]!.body).data).toMatchObject({
      session_id: 'alone',
      watch_id: none.watchId,
      completed: 0,
      failed: 0,
    });
    expect(accepted(hooks.received, 'messages.derived').map((r) => JSON.parse(r.body).data.watch_id)).toEqual(
      [watched.watchId, none.watchId],
    );
  },
);

it.each([
  { name: 'sqlite', backend: SQLITE },
  { name: 'postgres', backend: POSTGRES },
])(
  'messages.derived waits for a failed task run again, even in a unit that had drained ($name)',
  async ({ backend }) => {
    const bobGoes = deferred<void>();
    const retryGoes = deferred<void>();
    let aliceBadRuns = 0;
    const handler: TaskHandler = async ({ task }) => {
      if (task.key.observerId === 'bob') await bobGoes.promise;
      else if (task.messages.some((m) => m.content === 'bad') && aliceBadRuns++ === 0)
        throw new PermanentTaskError('first time');
      else if (task.messages.some((m) => m.content === 'bad')) await retryGoes.promise;
    };
    const { server, hooks, client } = await watchedChat(backend, handler);
    const sent = await client.session('chat').addMessages(
      [
        { peerId: 'alice', content: 'hi' },
        { peerId: 'alice', content: 'bad' },
      ],
      { notifyWhenDerived: true },
    );
    // Alice's own unit drains (its "bad" task failed); bob's waits. Run the failed task again: it waits.
    await expect
      .poll(async () => (await client.getDeriverStatus({ observerId: 'alice' })).failedWorkUnits)
      .toBe(1);
    await gql(
      server,
      'mutation { retryFailedTasks(sessionId: "chat", observerId: "alice") { retriedTasks } }',
    );
    await expect.poll(() => aliceBadRuns).toBe(2);
    // Bob's unit drains while the retried task still runs: not derived yet.
    bobGoes.resolve();
    await expect
      .poll(async () => (await client.getDeriverStatus({ observerId: 'bob' })).completedWorkUnits)
      .toBe(2);
    // Nothing was written to the outbox for it (committed with bob's last task, had it been).
    const figures = await gql<{ webhooks: { pendingDeliveries: number; deliveredDeliveries: number }[] }>(
      server,
      '{ webhooks { pendingDeliveries deliveredDeliveries } }',
    );
    expect(figures.webhooks).toEqual([{ pendingDeliveries: 0, deliveredDeliveries: 0 }]);
    retryGoes.resolve();
    await hooks.until(() => accepted(hooks.received, 'messages.derived').length === 1);
    expect(JSON.parse(accepted(hooks.received, 'messages.derived')[0]!.body).data).toMatchObject({
      watch_id: sent.watchId,
      completed: 4,
      failed: 0,
    });
  },
);

it.each([
  { name: 'sqlite', backend: SQLITE },
  { name: 'postgres', backend: POSTGRES },
])('messages.derived: a watched call whose tasks are cancelled is derived ($name)', async ({ backend }) => {
  const location = await backend.fresh();
  cleanups.push(location.dispose);
  // No worker: nothing runs, so cancelling finishes every task (and the outbox keeps the event).
  const server = await startTestServer({
    config: { webhookAllowPrivate: true, databaseUrl: location.url, workerConcurrency: 0 },
  });
  cleanups.push(() => server.close());
  const client = createDeriverClient({ url: server.url });
  cleanups.push(() => client.close());
  await gql(
    server,
    'mutation { createWebhook(url: "https://hooks.example.com/x", events: [MESSAGES_DERIVED], secret: "a-webhook-secret-of-some-length") { id } }',
  );
  await client.upsertSession({ id: 'chat', peers: [{ peerId: 'alice' }] });
  await client
    .session('chat')
    .addMessages([{ peerId: 'alice', content: 'one' }], { notifyWhenDerived: true });
  const pending = async () =>
    (await gql<{ webhooks: { pendingDeliveries: number }[] }>(server, '{ webhooks { pendingDeliveries } }'))
      .webhooks[0]?.pendingDeliveries;
  expect(await pending()).toBe(0);
  await gql(server, 'mutation { cancelPendingTasks(sessionId: "chat") { cancelledTasks } }');
  expect(await pending()).toBe(1);
});

it.each([
  { name: 'sqlite', backend: SQLITE },
  { name: 'postgres', backend: POSTGRES },
])('retention prunes settled deliveries, never a pending one ($name)', async ({ backend }) => {
  const { store } = await storeWithEndpoint(backend, ['queue.empty']);
  const body = (n: number) => ({
    workspaceId: 'default',
    type: 'queue.empty' as const,
    body: `{"n":${n}}`,
  });
  for (let n = 0; n < 3; n++) expect(await store.enqueueWebhookEvent(body(n))).toBe(1);
  const [first] = await store.claimWebhookDeliveries({ max: 1, leaseMs: 60_000, busyEndpoints: [] });
  await store.settleWebhookDelivery(first!.id, { ok: true });
  const [second] = await store.claimWebhookDeliveries({ max: 1, leaseMs: 60_000, busyEndpoints: [] });
  await store.settleWebhookDelivery(second!.id, { ok: false, error: 'HTTP 500', retryAt: null });
  // Older than everything: the delivered and the given-up one go, the pending one stays.
  expect(await store.pruneFinished(Date.now() + 1_000, 100)).toBe(2);
  const [endpoint] = await store.listWebhooks('default');
  expect(endpoint).toMatchObject({ pending: 1, delivered: 0, failed: 0 });
  expect(await store.pruneFinished(Date.now() + 1_000, 100)).toBe(0);
});

it('PostgreSQL: two transactions finishing the last tasks of a watch and a session at once send each event once', async () => {
  const { location, store, deriver } = await storeWithEndpoint(POSTGRES, [
    'messages.derived',
    'session.idle',
  ]);
  await deriver.upsertSession({
    id: 'chat',
    peers: [{ peerId: 'alice' }, { peerId: 'bob', observeOthers: true }],
  });
  await deriver.addMessages({
    sessionId: 'chat',
    messages: [{ peerId: 'alice', content: 'hi' }],
    notifyWhenDerived: true,
  });
  // Two units (alice's own, bob observing her), one task each: each in its own transaction.
  const [first, second] = await store.claim({
    owner: 'w',
    leaseMs: 60_000,
    max: 2,
    prefetch: 1,
    maxInterruptions: 3,
  });
  const report = (unit: ClaimedUnit) => ({
    lease: unit.lease,
    attempts: unit.tasks.map((t) => ({ taskId: t.id, outcome: { kind: 'succeeded' as const } })),
    running: null,
  });
  // Transaction A applies the first report and stays open; B reports the second meanwhile.
  const schema = new URL(location.url).searchParams.get('schema')!;
  const a = new pg.Client({ connectionString: location.url.replace(/\?.*$/, ''), types: PG_TYPES });
  await a.connect();
  cleanups.push(() => a.end());
  await a.query(`SET search_path TO ${schema}`);
  await a.query('BEGIN');
  const [lock] = lockReported([report(first!)]);
  await applyReports(a, [report(first!)], (await a.query(lock!)).rows, 'w', Date.now(), {});
  const b = store.settle({
    owner: 'w',
    leaseMs: 60_000,
    max: 0,
    prefetch: 1,
    maxInterruptions: 3,
    reports: [report(second!)],
  });
  // B either waits for A's locks (it must: it cannot decide while A's finish is uncommitted) or ends.
  let bEnded = false;
  void b.then(
    () => (bEnded = true),
    () => (bEnded = true),
  );
  await expect
    .poll(async () => {
      if (bEnded) return 'ended';
      const waiting = await a.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
      );
      return waiting.rows[0]!.n > 0 ? 'waiting' : 'running';
    })
    .not.toBe('running');
  await a.query('COMMIT');
  await b;
  const deliveries = await a.query<{ type: string }>('SELECT type FROM webhook_deliveries ORDER BY id');
  expect(deliveries.rows.map((r) => r.type).sort()).toEqual(['messages.derived', 'session.idle']);
});

it.each([
  { name: 'sqlite', backend: SQLITE },
  { name: 'postgres', backend: POSTGRES },
])(
  'messages.derived: a watched task failed by crash recovery derives its call ($name)',
  async ({ backend }) => {
    const { store, deriver } = await storeWithEndpoint(backend, ['messages.derived']);
    await deriver.upsertSession({ id: 'chat', peers: [{ peerId: 'alice' }] });
    const sent = await deriver.addMessages({
      sessionId: 'chat',
      messages: [{ peerId: 'alice', content: 'crashes its process' }],
      notifyWhenDerived: true,
    });
    // A worker takes it and dies; its restart recovers the lease: the task's last interruption fails it.
    const claimed = await store.claim({
      owner: 'w',
      leaseMs: 60_000,
      max: 1,
      prefetch: 1,
      maxInterruptions: 1,
    });
    expect(claimed).toHaveLength(1);
    expect(await store.recoverLeases({ owner: 'w', maxInterruptions: 1 })).toBe(1);
    const [delivery] = await store.claimWebhookDeliveries({ max: 1, leaseMs: 60_000, busyEndpoints: [] });
    expect(JSON.parse(delivery!.body).data).toMatchObject({
      watch_id: sent.watchId,
      message_ids: sent.messages.map((m) => m.id),
      completed: 1,
      failed: 1,
    });
  },
);

it('takes public internet addresses only unless allowed, never credentials, and refuses bad input with a clear error', async () => {
  const server = await startTestServer();
  cleanups.push(() => server.close());
  const refused = await server.http(
    `mutation { createWebhook(url: "http://127.0.0.1:9/x", events: [QUEUE_EMPTY], secret: "${SECRET}") { id } }`,
  );
  expect(refused.errors?.[0]).toMatchObject({
    message: expect.stringContaining('WEBHOOK_ALLOW_PRIVATE=true'),
    extensions: { code: 'BAD_USER_INPUT' },
  });
  // Every IANA special-purpose block, IPv4 and IPv6, and the mapped and translated forms: refused by address.
  const { networkInterfaces } = await import('node:os');
  const own = Object.values(networkInterfaces())
    .flat()
    .filter((i) => i && !i.internal && i.family === 'IPv4')
    .map((i) => i!.address);
  for (const host of [
    '0.1.2.3',
    '10.1.2.3',
    '100.64.0.1',
    '169.254.1.1',
    '172.16.0.1',
    '192.0.0.5',
    '192.0.2.2',
    '192.168.1.1',
    '198.18.0.1',
    '198.51.100.1',
    '203.0.113.1',
    '224.0.0.1',
    '240.0.0.1',
    '255.255.255.255',
    '[::1]',
    '[64:ff9b::808:808]',
    '[100::1]',
    '[2001:db8::1]',
    '[fc00::1]',
    '[fe80::1]',
    '[ff02::1]',
    '[::ffff:10.0.0.1]',
    '[::ffff:0:a00:1]',
    ...own,
  ]) {
    const answer = await server.http(
      `mutation { createWebhook(url: "http://${host}:18090/x", events: [QUEUE_EMPTY], secret: "${SECRET}") { id } }`,
    );
    expect(answer.errors?.[0], host).toMatchObject({
      message: expect.stringContaining('public internet addresses'),
      extensions: { code: 'BAD_USER_INPUT' },
    });
  }
  // A public address is taken; a URL with credentials never is, and none is ever shown.
  const publicOne = await server.http(
    `mutation { createWebhook(url: "https://8.8.8.8/x", events: [QUEUE_EMPTY], secret: "${SECRET}") { url } }`,
  );
  expect(publicOne.errors).toBeUndefined();
  const withCredentials = await server.http(
    `mutation { createWebhook(url: "https://user:pw@example.com/x", events: [QUEUE_EMPTY], secret: "${SECRET}") { id } }`,
  );
  expect(withCredentials.errors?.[0]?.message).toMatch(/may not carry credentials/);
  expect(withCredentials.errors?.[0]?.message).not.toMatch(/pw/);
  expect(shownUrl('https://user:pw@example.com/x')).toBe('https://example.com/x');
  const removed = await server.http<{ webhooks: { id: string }[] }>('{ webhooks { id } }');
  await gql(server, `mutation { removeWebhook(id: "${removed.data!.webhooks[0]!.id}") }`);
  const short = await server.http(
    'mutation { createWebhook(url: "https://example.com/x", events: [QUEUE_EMPTY], secret: "short") { id } }',
  );
  expect(short.errors?.[0]?.message).toMatch(/secret.*at least 16 characters/);
  const missing = await server.http('mutation { removeWebhook(id: "12345") }');
  expect(missing.errors?.[0]?.extensions).toMatchObject({ code: 'NOT_FOUND' });
  // At most 20 endpoints a workspace; the 21st is refused, and removing one makes room.
  const create = (n: number) =>
    server.http<{ createWebhook: { id: string } }>(
      `mutation { createWebhook(url: "https://hooks${n}.example.com/x", events: [QUEUE_EMPTY], secret: "${SECRET}") { id } }`,
    );
  const ids: string[] = [];
  for (let n = 0; n < 20; n++) ids.push((await create(n)).data!.createWebhook.id);
  const over = await create(20);
  expect(over.errors?.[0]).toMatchObject({
    message: expect.stringContaining('has 20 webhook endpoints, the most it may have'),
    extensions: { code: 'BAD_USER_INPUT' },
  });
  expect((await gql<{ webhooks: unknown[] }>(server, '{ webhooks { id } }')).webhooks).toHaveLength(20);
  await gql(server, `mutation { removeWebhook(id: "${ids[0]}") }`);
  expect((await create(20)).errors).toBeUndefined();
});

it('a receiver that never answers holds neither the queue nor other endpoints', async () => {
  const server = await startTestServer({ config: { webhookAllowPrivate: true, demoTaskMs: 1 } });
  cleanups.push(() => server.close());
  const dead = await receiver({ hang: true });
  const alive = await receiver();
  await gql(
    server,
    'mutation { upsertWorkspace(id: "default", settings: { summariesEnabled: false }) { id } }',
  );
  for (const hooks of [dead, alive]) {
    await gql(
      server,
      `mutation { createWebhook(url: "${hooks.url}", events: [QUEUE_EMPTY], secret: "${SECRET}") { id } }`,
    );
  }
  const client = createDeriverClient({ url: server.url });
  cleanups.push(() => client.close());
  for (let s = 0; s < 10; s++) {
    await client.upsertSession({ id: `s${s}`, peers: [{ peerId: 'a' }] });
    await client.addMessages({ sessionId: `s${s}`, messages: [{ peerId: 'a', content: 'x' }] });
  }
  await client.waitForIdle();
  // Every unit drained and the live endpoint got each queue.empty while the dead one holds its first.
  await alive.until(() => accepted(alive.received, 'queue.empty').length === 10);
  expect(dead.open.size).toBe(1);
  expect(dead.received).toHaveLength(1);
});

it('a server SIGKILLed after the events committed delivers them after its restart', async () => {
  const temp = tempDir();
  cleanups.push(() => temp.remove());
  const port = await freePort();
  const hooksPort = await freePort(); // nobody listens there yet: deliveries fail and wait
  const env = {
    ...process.env,
    DATABASE_URL: `file:${temp.path('hooks.db')}`,
    PORT: String(port),
    WEBHOOK_ALLOW_PRIVATE: 'true',
    // A delivery the killed process was sending is leased for twice this: short, so the restart takes it soon.
    WEBHOOK_TIMEOUT_MS: '1000',
    LOG: temp.path('tasks.log'),
    TASK_MS: '1',
  };
  const start = () => {
    const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', INSTANCE], {
      env,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    cleanups.push(() => {
      child.kill('SIGKILL');
    });
    return child;
  };
  const first = start();
  const url = await listeningUrl(first);
  const http = (query: string) =>
    fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query }),
    }).then((r) => r.json() as Promise<{ data?: unknown; errors?: unknown }>);
  const ok = async (query: string) => {
    const result = await http(query);
    expect(result.errors).toBeUndefined();
  };
  await ok('mutation { upsertWorkspace(id: "default", settings: { summariesEnabled: false }) { id } }');
  await ok(
    `mutation { createWebhook(url: "http://127.0.0.1:${hooksPort}/hooks", events: [QUEUE_EMPTY, SESSION_IDLE], secret: "${SECRET}") { id } }`,
  );
  await ok('mutation { upsertSession(id: "chat", peers: [{ peerId: "alice" }]) { id } }');
  await ok(
    'mutation { addMessages(sessionId: "chat", messages: [{ peerId: "alice", content: "hi" }]) { enqueuedTasks } }',
  );
  // Wait until the events are committed (the receiver is down, so they cannot be delivered).
  const client = createDeriverClient({ url });
  await client.waitForIdle();
  await client.close();
  const attempted = deferred();
  const poll = async () => {
    for (;;) {
      const result = (await http('{ webhooks { pendingDeliveries lastError } }')) as {
        data: { webhooks: { pendingDeliveries: number; lastError: string | null }[] };
      };
      const [hook] = result.data.webhooks;
      // Both events committed (and not delivered: nobody listens): the kill comes before any
      // delivery, and before the retries' backoff grows.
      if (hook && hook.pendingDeliveries === 2) return attempted.resolve();
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  await poll();
  await attempted.promise;
  first.kill('SIGKILL');
  await new Promise((resolve) => first.once('exit', resolve));

  const hooks = await receiver({ port: hooksPort });
  const second = start();
  await listeningUrl(second);
  await hooks.until(
    () =>
      accepted(hooks.received, 'queue.empty').length === 1 &&
      accepted(hooks.received, 'session.idle').length === 1,
  );
  expect(
    hooks.received.every((r) => r.signature === createHmac('sha256', SECRET).update(r.body).digest('hex')),
  ).toBe(true);
});

it('the Python example checks the signature: it takes events signed with its secret and refuses others', async () => {
  const temp = tempDir();
  cleanups.push(() => temp.remove());
  const python = await startPythonWorker({ output: temp.path('out.jsonl'), webhookSecret: SECRET });
  cleanups.push(() => python.stop());
  const server = await startTestServer({ config: { webhookAllowPrivate: true, handlerUrl: python.url } });
  cleanups.push(() => server.close());
  await gql(
    server,
    'mutation { upsertWorkspace(id: "default", settings: { summariesEnabled: false }) { id } }',
  );
  const hook = `${python.url}webhook`;
  await gql(
    server,
    `mutation { createWebhook(url: "${hook}", events: [QUEUE_EMPTY], secret: "${SECRET}") { id } }`,
  );
  await gql(
    server,
    `mutation { createWebhook(url: "${hook}", events: [QUEUE_EMPTY], secret: "not-the-secret-it-knows") { id } }`,
  );
  await gql(server, 'mutation { upsertSession(id: "py", peers: [{ peerId: "alice" }]) { id } }');
  await gql(
    server,
    'mutation { addMessages(sessionId: "py", messages: [{ peerId: "alice", content: "hello" }]) { enqueuedTasks } }',
  );
  await expect
    .poll(async () => {
      const { webhooks } = await gql<{
        webhooks: { deliveredDeliveries: number; lastError: string | null }[];
      }>(server, '{ webhooks { deliveredDeliveries lastError } }');
      return webhooks;
    })
    .toEqual([
      { deliveredDeliveries: 1, lastError: null },
      { deliveredDeliveries: 0, lastError: 'HTTP 401: invalid webhook signature: check WEBHOOK_SECRET' },
    ]);
  const events = (python.records() as unknown as { webhook?: string; data?: unknown }[]).filter(
    (r) => r.webhook,
  );
  expect(events).toEqual([
    {
      webhook: 'queue.empty',
      eventId: expect.stringMatching(/^evt_\d+$/),
      data: {
        workspace_id: 'default',
        queue_type: 'representation',
        session_id: 'py',
        observer: 'alice',
        observed: 'alice',
      },
    },
  ]);
});
