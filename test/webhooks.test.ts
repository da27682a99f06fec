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
import { afterEach, expect, it } from 'vitest';
import { createDeriverClient } from '../src/client/index.ts';
import { PermanentTaskError } from '../src/errors.ts';
import type { TaskHandler } from '../src/scheduler/options.ts';
import { deferred, tempDir } from './helpers.ts';
import { startTestServer, type TestServer } from './server-helpers.ts';
import { freePort, listeningUrl } from './support/processes.ts';
import { startPythonWorker } from './support/python-worker.ts';
import { POSTGRES, SQLITE } from './support/stores.ts';

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
    const location = await backend.fresh();
    cleanups.push(location.dispose);
    const server = await startTestServer({
      handlers: { representation: handler, summary: handler },
      config: { webhookAllowPrivate: true, databaseUrl: location.url },
    });
    cleanups.push(() => server.close());
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

it('refuses a private address unless allowed, and bad input with a clear error', async () => {
  const server = await startTestServer();
  cleanups.push(() => server.close());
  const refused = await server.http(
    `mutation { createWebhook(url: "http://127.0.0.1:9/x", events: [QUEUE_EMPTY], secret: "${SECRET}") { id } }`,
  );
  expect(refused.errors?.[0]).toMatchObject({
    message: expect.stringContaining('WEBHOOK_ALLOW_PRIVATE=true'),
    extensions: { code: 'BAD_USER_INPUT' },
  });
  const short = await server.http(
    'mutation { createWebhook(url: "https://example.com/x", events: [QUEUE_EMPTY], secret: "short") { id } }',
  );
  expect(short.errors?.[0]?.message).toMatch(/secret.*at least 16 characters/);
  const missing = await server.http('mutation { removeWebhook(id: "12345") }');
  expect(missing.errors?.[0]?.extensions).toMatchObject({ code: 'NOT_FOUND' });
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
