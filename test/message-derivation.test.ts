/**
 * Your messages, derived (docs/api.md): `waitForMessages` and `addMessages(...).waitForDerivation`
 * resolve when the last task of those messages finishes, while another session keeps the queue busy
 * (they must not wait for it), on one instance and across two on PostgreSQL; unknown ids are
 * NOT_FOUND; `Message.derivation`, the query and the session watermark read right on the way.
 */
import { SignJWT } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { createDeriverClient, type DeriverClient, DeriverClientError } from '../src/client/index.ts';
import type { TaskHandler } from '../src/scheduler/options.ts';
import { deferred } from './helpers.ts';
import { startTestServer, type TestServer } from './server-helpers.ts';
import { POSTGRES } from './support/stores.ts';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function client(server: TestServer): DeriverClient {
  const c = createDeriverClient({ url: server.url });
  cleanups.push(() => c.close());
  return c;
}

/**
 * A deriver whose tasks in session `busy` wait for `busyGate`, and whose task for the message with
 * `last` in it waits for `lastGate` (it signals `lastStarted`).
 */
function gatedHandler() {
  const busyGate = deferred();
  const lastGate = deferred();
  const lastStarted = deferred();
  const handler: TaskHandler = async ({ task }) => {
    if (task.key.sessionId === 'busy') await busyGate.promise;
    if (task.messages.some((m) => m.content === 'last')) {
      lastStarted.resolve();
      await lastGate.promise;
    }
  };
  return { handler, busyGate, lastGate, lastStarted };
}

async function setUp(c: DeriverClient) {
  await c.upsertWorkspace({ id: 'default', settings: { summariesEnabled: false } });
  await c.upsertSession({ id: 'busy', peers: [{ peerId: 'zed' }] });
  await c.upsertSession({
    id: 'chat',
    peers: [
      { peerId: 'alice', observeOthers: true },
      { peerId: 'bob', observeOthers: true },
    ],
  });
  // The other session keeps the queue busy for the whole test.
  await c.addMessages({ sessionId: 'busy', messages: [{ peerId: 'zed', content: 'long work' }] });
}

describe('your messages, derived', () => {
  it('resolves when the last task of those messages finishes, not when the queue is idle', async () => {
    const gates = gatedHandler();
    const server = await startTestServer({
      handlers: { representation: gates.handler, summary: gates.handler },
      config: { workerConcurrency: 4 },
    });
    cleanups.push(
      () => server.close(),
      () => gates.busyGate.resolve(),
      () => gates.lastGate.resolve(),
    );
    const c = client(server);
    await setUp(c);
    const sent = await c.addMessages({
      sessionId: 'chat',
      messages: [
        { peerId: 'alice', content: 'hello' },
        { peerId: 'alice', content: 'last' },
      ],
    });
    // Each message makes 2 tasks (alice's own, bob observing alice); bob's view of both:
    const ids = sent.messages.map((m) => m.id);
    let resolved = false;
    const waiting = sent.waitForDerivation({ observerId: 'bob' }).then((result) => {
      resolved = true;
      return result;
    });
    await gates.lastStarted.promise;
    const midway = await c.getMessageDerivation(ids, { observerId: 'bob' });
    expect(midway).toMatchObject({ total: 2, done: false });
    expect(midway.inProgress + midway.pending).toBeGreaterThan(0);
    expect(resolved).toBe(false);
    gates.lastGate.resolve();
    const result = await waiting;
    expect(result).toMatchObject({
      total: 2,
      completed: 2,
      failed: 0,
      pending: 0,
      inProgress: 0,
      done: true,
    });
    expect(result.messages.map((m) => [m.messageId, m.seq, m.total, m.done])).toEqual([
      [ids[0], 1, 1, true],
      [ids[1], 2, 1, true],
    ]);
    // The busy session still holds the queue: waiting for idle would still be waiting.
    const status = await c.getDeriverStatus({});
    expect(status.pendingWorkUnits + status.inProgressWorkUnits).toBeGreaterThan(0);
    // Every observer: alice's own tasks too; the watermark of the session is at its last message.
    const all = await c.waitForMessages(ids);
    expect(all).toMatchObject({ total: 4, completed: 4, done: true });
    const watermark = await server.http<{ session: { deriverStatus: { derivedThroughSeq: number } } }>(
      '{ session(id: "chat") { deriverStatus { derivedThroughSeq } } }',
    );
    expect(watermark.data?.session.deriverStatus.derivedThroughSeq).toBe(2);
    const busyMark = await server.http<{ session: { deriverStatus: { derivedThroughSeq: number } } }>(
      '{ session(id: "busy") { deriverStatus { derivedThroughSeq } } }',
    );
    expect(busyMark.data?.session.deriverStatus.derivedThroughSeq).toBe(0);
    // Message.derivation on a message read back.
    const read = await server.http<{ messageDerivation: { messages: { done: boolean }[] } }>(
      `{ messageDerivation(messageIds: ["${ids[0]}"], observerId: "bob") { messages { done } } }`,
    );
    expect(read.data?.messageDerivation.messages).toEqual([{ done: true }]);
  });

  it('Message.derivation on a list of messages is one read per filter, not one per message', async () => {
    const server = await startTestServer({ config: { workerConcurrency: 0 } });
    cleanups.push(() => server.close());
    await server.http(
      'mutation { upsertWorkspace(id: "default", settings: { summariesEnabled: false }) { id } }',
    );
    await server.http(
      'mutation { upsertSession(id: "chat", peers: [{ peerId: "alice" }, { peerId: "bob", observeOthers: true }]) { id } }',
    );
    const { store } = server.app;
    const read = store.listMessageTasks.bind(store);
    let reads = 0;
    store.listMessageTasks = (request) => {
      reads++;
      return read(request);
    };
    const messages = Array.from({ length: 20 }, (_, i) => `{ peerId: "alice", content: "m${i}" }`).join(', ');
    const added = await server.http<{
      addMessages: {
        messages: { seq: number; all: { total: number }; bob: { total: number; done: boolean } }[];
      };
    }>(
      `mutation { addMessages(sessionId: "chat", messages: [${messages}]) {
        messages { seq all: derivation { total } bob: derivation(observerId: "bob") { total done } } } }`,
    );
    expect(added.errors).toBeUndefined();
    const rows = added.data!.addMessages.messages;
    expect(rows).toHaveLength(20);
    // alice's own unit and bob's: two tasks a message, one of them bob's; nothing ran (no worker).
    for (const row of rows) expect(row).toMatchObject({ all: { total: 2 }, bob: { total: 1, done: false } });
    expect(reads).toBe(2); // one per filter (every observer; bob), for the 20 messages
  });

  it('an unknown message is NOT_FOUND naming messageIds; a malformed one is refused as bad input', async () => {
    const server = await startTestServer();
    cleanups.push(() => server.close());
    const c = client(server);
    const error = await c.waitForMessages(['999999']).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DeriverClientError);
    expect(error).toMatchObject({ code: 'NOT_FOUND', message: 'message "999999" does not exist' });
    const bad = await server.http('{ messageDerivation(messageIds: ["abc"]) { done } }');
    expect(bad.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT' });
    expect(bad.errors?.[0]?.message).toMatch(/messageIds/);
  });

  it('across two instances on PostgreSQL: waiting on an API instance while another one runs the tasks', async () => {
    const location = await POSTGRES.fresh();
    cleanups.push(location.dispose);
    const gates = gatedHandler();
    const worker = await startTestServer({
      handlers: { representation: gates.handler, summary: gates.handler },
      config: { databaseUrl: location.url, workerConcurrency: 4 },
    });
    const api = await startTestServer({ config: { databaseUrl: location.url, workerConcurrency: 0 } });
    cleanups.push(
      () => worker.close(),
      () => api.close(),
      () => gates.busyGate.resolve(),
      () => gates.lastGate.resolve(),
    );
    const c = client(api);
    await setUp(c);
    const sent = await c.addMessages({
      sessionId: 'chat',
      messages: [
        { peerId: 'alice', content: 'hello' },
        { peerId: 'bob', content: 'last' },
      ],
    });
    let resolved = false;
    const waiting = sent.waitForDerivation().then((result) => {
      resolved = true;
      return result;
    });
    await gates.lastStarted.promise;
    expect(resolved).toBe(false);
    gates.lastGate.resolve();
    expect(await waiting).toMatchObject({ total: 4, completed: 4, done: true });
    const status = await c.getDeriverStatus({});
    expect(status.pendingWorkUnits + status.inProgressWorkUnits).toBeGreaterThan(0);
  });
});

it("a session key may wait for its session's messages only: another session's are answered as unknown ones", async () => {
  const secret = 'test-secret-that-is-at-least-32-bytes-long';
  const sign = (claims: Record<string, unknown>) =>
    new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(secret));
  const server = await startTestServer({ config: { authJwtSecret: secret } });
  cleanups.push(() => server.close());
  const admin = createDeriverClient({ url: server.url, token: await sign({ ad: true }) });
  cleanups.push(() => admin.close());
  await admin.upsertSession({ id: 'chat', peers: [{ peerId: 'alice' }] });
  const sent = await admin.addMessages({ sessionId: 'chat', messages: [{ peerId: 'alice', content: 'hi' }] });
  const ids = sent.messages.map((m) => m.id);
  const own = createDeriverClient({ url: server.url, token: await sign({ w: 'default', s: 'chat' }) });
  const other = createDeriverClient({ url: server.url, token: await sign({ w: 'default', s: 'elsewhere' }) });
  cleanups.push(
    () => own.close(),
    () => other.close(),
  );
  expect(await own.waitForMessages(ids)).toMatchObject({ done: true, total: 1 });
  // Another session's message and a message nobody has get the same answer, apart from the id.
  const unknown = String(Number(ids[0]) + 1000);
  const answers = async (messageIds: string[]) =>
    Promise.all([
      other.waitForMessages(messageIds).catch((e: unknown) => e),
      other.getMessageDerivation(messageIds).catch((e: unknown) => e),
    ]);
  const [foreignWait, foreignRead] = await answers(ids);
  const [unknownWait, unknownRead] = await answers([unknown]);
  expect(foreignWait).toMatchObject({ code: 'NOT_FOUND', argumentPath: ['messageIds'] });
  const apartFromId = (e: unknown, id: string) =>
    JSON.stringify({ ...(e as object), message: (e as Error).message }).replaceAll(`\\"${id}\\"`, '"ID"');
  expect(apartFromId(foreignWait, ids[0]!)).toBe(apartFromId(unknownWait, unknown));
  expect(apartFromId(foreignRead, ids[0]!)).toBe(apartFromId(unknownRead, unknown));
});
