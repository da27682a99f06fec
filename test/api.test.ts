import { createClient } from 'graphql-ws';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import {
  createDeriverClient,
  type DeriverClient,
  DeriverClientError,
  type DeriverStatus,
  WaitForIdleTimeoutError,
} from '../src/client/index.ts';
import { DEFAULT_SERVER_LIMITS } from '../src/server/server-limits.ts';
import { unexpectedSummary } from './helpers.ts';
import { gate, startTestServer, type TestServer } from './server-helpers.ts';

let server: TestServer | undefined;
let client: DeriverClient | undefined;
afterEach(async () => {
  await client?.close();
  await server?.close();
  client = undefined;
  server = undefined;
});

async function setup(options: Parameters<typeof startTestServer>[0] = {}) {
  server = await startTestServer(options);
  client = createDeriverClient({ url: server.url });
  return { server, client };
}

const counts = (s: DeriverStatus) => ({
  totalWorkUnits: s.totalWorkUnits,
  completedWorkUnits: s.completedWorkUnits,
  inProgressWorkUnits: s.inProgressWorkUnits,
  pendingWorkUnits: s.pendingWorkUnits,
  failedWorkUnits: s.failedWorkUnits,
});

async function workedExample(c: DeriverClient) {
  await c.upsertSession({
    id: 'x',
    peers: [
      { peerId: 'alice', observeOthers: false },
      { peerId: 'bob', observeOthers: true },
      { peerId: 'carol', observeOthers: true },
    ],
  });
  const a = await c.addMessages({ sessionId: 'x', messages: [{ peerId: 'alice', content: 'hi' }] });
  const b = await c.addMessages({ sessionId: 'x', messages: [{ peerId: 'bob', content: 'hey' }] });
  return [a.enqueuedTasks, b.enqueuedTasks];
}

describe('through the typed client (subscriptions over graphql-ws, mutations over HTTP)', () => {
  it('runs the SPEC worked example end to end, with filters and the sessions breakdown', async () => {
    const g = gate();
    const { client } = await setup({ handlers: { representation: g.handler, summary: unexpectedSummary } });
    expect(await workedExample(client)).toEqual([3, 2]);
    expect((await client.getDeriverStatus({ sessionId: 'x' })).totalWorkUnits).toBe(5);
    expect((await client.getDeriverStatus({ observerId: 'carol' })).totalWorkUnits).toBe(2);
    expect((await client.getDeriverStatus({ observerId: 'bob', senderId: 'alice' })).totalWorkUnits).toBe(1);
    expect(await client.getDeriverStatus({ sessionId: 'unknown' })).toMatchObject({
      totalWorkUnits: 0,
      sessions: null,
    });
    const all = await client.getDeriverStatus();
    expect(all.sessions?.map((s) => [s.sessionId, s.totalWorkUnits])).toEqual([['x', 5]]);
    g.open();
    const idle = await client.waitForIdle({ sessionId: 'x' });
    expect(counts(idle)).toEqual({
      totalWorkUnits: 5,
      completedWorkUnits: 5,
      inProgressWorkUnits: 0,
      pendingWorkUnits: 0,
      failedWorkUnits: 0,
    });
    const session = await client.session('x').get();
    expect(session?.peers.map((p) => [p.peerId, p.observeOthers])).toEqual([
      ['alice', false],
      ['bob', true],
      ['carol', true],
    ]);
  });

  it('sends the snapshot first, then changes, never two equal in a row; the last event equals the query', async () => {
    const g = gate();
    const { client } = await setup({ handlers: { representation: g.handler, summary: unexpectedSummary } });
    await client.upsertSession({ id: 's', peers: [{ peerId: 'a' }, { peerId: 'b', observeOthers: true }] });
    const stream = client.watchDeriverStatus({ sessionId: 's' }, { coalesceMs: 0 });
    const first = await stream.next();
    expect(first.value && counts(first.value)).toEqual({
      totalWorkUnits: 0,
      completedWorkUnits: 0,
      inProgressWorkUnits: 0,
      pendingWorkUnits: 0,
      failedWorkUnits: 0,
    });
    await client.addMessages({
      sessionId: 's',
      messages: Array.from({ length: 10 }, (_, i) => ({ peerId: i % 2 ? 'a' : 'b', content: `m${i}` })),
    });
    g.open();
    const events: DeriverStatus[] = [];
    for await (const status of stream) {
      events.push(status);
      if (status.completedWorkUnits === 15) break;
    }
    expect(events.length).toBeGreaterThan(1);
    for (let i = 1; i < events.length; i++) expect(counts(events[i]!)).not.toEqual(counts(events[i - 1]!));
    for (const e of events)
      expect(e.totalWorkUnits).toBe(e.pendingWorkUnits + e.inProgressWorkUnits + e.completedWorkUnits);
    const query = await client.getDeriverStatus({ sessionId: 's' });
    expect(counts(events.at(-1)!)).toEqual(counts(query));
  });

  it('coalesces: with a long window a burst of changes arrives as few events, the last one exact', async () => {
    const { client, server } = await setup({ config: { demoTaskMs: 0 } });
    await client.upsertSession({ id: 's', peers: [{ peerId: 'a' }] });
    const stream = client.watchDeriverStatus({ sessionId: 's' }, { coalesceMs: 300 });
    await stream.next();
    const changes = { n: 0 };
    server.app.status.events.on('status:changed', () => void changes.n++);
    await client.addMessages({
      sessionId: 's',
      messages: Array.from({ length: 100 }, () => ({ peerId: 'a', content: 'x' })),
    });
    const events: DeriverStatus[] = [];
    for await (const status of stream) {
      events.push(status);
      if (status.completedWorkUnits === 105) break;
    }
    expect(changes.n).toBeGreaterThan(events.length);
    expect(counts(events.at(-1)!)).toEqual(counts(await client.getDeriverStatus({ sessionId: 's' })));
    await stream.return();
  });

  it('untilIdle completes at once when already idle, and after the work otherwise', async () => {
    const g = gate();
    const { client } = await setup({ handlers: { representation: g.handler, summary: unexpectedSummary } });
    await client.upsertSession({ id: 'empty', peers: [{ peerId: 'a' }] });
    const empty = await client.waitForIdle({ sessionId: 'empty' });
    expect(empty.totalWorkUnits).toBe(0);
    await client.upsertSession({ id: 's', peers: [{ peerId: 'a' }] });
    await client.session('s').addMessages([{ peerId: 'a', content: 'x' }]);
    let opened = false;
    let openedWhenResolved: boolean | undefined;
    const waiting = client
      .session('s')
      .waitForIdle()
      .then((s) => {
        openedWhenResolved = opened;
        return s;
      });
    // The marker after which an early answer would have come: a second subscription on the same
    // socket sees the task running.
    for await (const status of client.watchDeriverStatus({ sessionId: 's' })) {
      if (status.inProgressWorkUnits === 1) break;
    }
    expect(openedWhenResolved).toBeUndefined();
    opened = true;
    g.open();
    expect((await waiting).completedWorkUnits).toBe(1);
    expect(openedWhenResolved).toBe(true);
  });

  it('waitForIdle rejects on timeout with a typed error carrying the last status', async () => {
    const g = gate();
    const { client } = await setup({ handlers: { representation: g.handler, summary: unexpectedSummary } });
    await client.upsertSession({ id: 's', peers: [{ peerId: 'a' }] });
    await client.addMessages({
      sessionId: 's',
      messages: [
        { peerId: 'a', content: 'x' },
        { peerId: 'a', content: 'y' },
      ],
    });
    const error = await client.waitForIdle({ sessionId: 's' }, { timeoutMs: 150 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WaitForIdleTimeoutError);
    expect((error as WaitForIdleTimeoutError).lastStatus).toMatchObject({
      totalWorkUnits: 2,
      completedWorkUnits: 0,
    });
    g.open();
    expect((await client.waitForIdle({ sessionId: 's' }, { timeoutMs: 10_000 })).completedWorkUnits).toBe(2);
  });
});

describe('queries and mutations over graphql-ws itself', () => {
  it('runs the worked example with a plain graphql-ws client and gets codes on errors', async () => {
    const { server } = await setup();
    const ws = createClient({ url: server.url.replace('http', 'ws'), webSocketImpl: WebSocket, lazy: true });
    const run = async (query: string) => {
      for await (const result of ws.iterate({ query })) return result;
      throw new Error('no result');
    };
    try {
      await run(
        'mutation{upsertSession(id:"x",peers:[{peerId:"alice"},{peerId:"bob",observeOthers:true},{peerId:"carol",observeOthers:true}]){id}}',
      );
      await run(
        'mutation{addMessages(sessionId:"x",messages:[{peerId:"alice",content:"hi"},{peerId:"bob",content:"hey"}]){enqueuedTasks}}',
      );
      expect(await run('{deriverStatus(sessionId:"x"){totalWorkUnits}}')).toEqual({
        data: { deriverStatus: { totalWorkUnits: 5 } },
      });
      const bad = await run('{deriverStatus(observerId:""){totalWorkUnits}}');
      expect(bad.errors?.[0]?.extensions).toMatchObject({
        code: 'BAD_USER_INPUT',
        argumentPath: ['observerId'],
      });
      const badSubscription = await run('subscription{deriverStatus(sessionId:"a b"){totalWorkUnits}}');
      expect(badSubscription.errors?.[0]?.extensions).toMatchObject({
        code: 'BAD_USER_INPUT',
        argumentPath: ['sessionId'],
      });
    } finally {
      await ws.dispose();
    }
  });
});

describe('bad input', () => {
  const cases: [string, string, Record<string, unknown>, string, (string | number)[] | undefined][] = [
    [
      'empty id',
      'mutation($m:[MessageInput!]!){addMessages(sessionId:"s",messages:$m){enqueuedTasks}}',
      { m: [{ peerId: '', content: 'x' }] },
      'BAD_USER_INPUT',
      ['messages', 0, 'peerId'],
    ],
    [
      'bad characters',
      'mutation($m:[MessageInput!]!){addMessages(sessionId:"s",messages:$m){enqueuedTasks}}',
      { m: [{ peerId: 'a/b', content: 'x' }] },
      'BAD_USER_INPUT',
      ['messages', 0, 'peerId'],
    ],
    [
      '101 messages',
      'mutation($m:[MessageInput!]!){addMessages(sessionId:"s",messages:$m){enqueuedTasks}}',
      { m: Array.from({ length: 101 }, () => ({ peerId: 'a', content: 'x' })) },
      'BAD_USER_INPUT',
      ['messages'],
    ],
    [
      'content too long',
      'mutation($m:[MessageInput!]!){addMessages(sessionId:"s",messages:$m){enqueuedTasks}}',
      { m: [{ peerId: 'a', content: 'x'.repeat(65_536) }] },
      'BAD_USER_INPUT',
      ['messages', 0, 'content'],
    ],
    [
      'unknown input field (variables)',
      'mutation($m:[MessageInput!]!){addMessages(sessionId:"s",messages:$m){enqueuedTasks}}',
      { m: [{ peerId: 'a', content: 'x', extra: 1 }] },
      'BAD_USER_INPUT',
      undefined,
    ],
    [
      'unknown input field (literal)',
      'mutation{addMessages(sessionId:"s",messages:[{peerId:"a",content:"x",extra:1}]){enqueuedTasks}}',
      {},
      'BAD_USER_INPUT',
      undefined,
    ],
    [
      'wrong type (variables)',
      'mutation($m:[MessageInput!]!){addMessages(sessionId:"s",messages:$m){enqueuedTasks}}',
      { m: [{ peerId: 'a', content: 5 }] },
      'BAD_USER_INPUT',
      undefined,
    ],
    [
      'wrong type (literal)',
      'mutation{addMessages(sessionId:"s",messages:[{peerId:"a",content:5}]){enqueuedTasks}}',
      {},
      'BAD_USER_INPUT',
      undefined,
    ],
    [
      'empty filter id',
      '{deriverStatus(observerId:""){totalWorkUnits}}',
      {},
      'BAD_USER_INPUT',
      ['observerId'],
    ],
    [
      'unknown session',
      'mutation{addMessages(sessionId:"ghost",messages:[{peerId:"a",content:"x"}]){enqueuedTasks}}',
      {},
      'NOT_FOUND',
      undefined,
    ],
    ['unknown field', '{deriverStatus{nope}}', {}, 'GRAPHQL_VALIDATION_FAILED', undefined],
    ['syntax error', '{deriverStatus(', {}, 'GRAPHQL_PARSE_FAILED', undefined],
    [
      'too many aliases',
      `{${Array.from({ length: 16 }, (_, i) => `a${i}:deriverStatus{totalWorkUnits}`).join(' ')}}`,
      {},
      'BAD_USER_INPUT',
      undefined,
    ],
  ];

  it.each(cases)(
    '%s: the right code, the argument at fault, nothing written',
    async (_name, query, variables, code, path) => {
      const { server } = await setup();
      await server.http('mutation{upsertSession(id:"s",peers:[{peerId:"a"}]){id}}');
      await server.http(
        'mutation{addMessages(sessionId:"s",messages:[{peerId:"a",content:"first"}]){enqueuedTasks}}',
      );
      const result = await server.http(query, variables);
      expect(result.errors?.[0]?.extensions?.code).toBe(code);
      expect(result.errors?.[0]?.message.length).toBeGreaterThan(5);
      expect(JSON.stringify(result)).not.toMatch(/at .*\.ts:\d+/); // no stack trace
      if (path) expect(result.errors?.[0]?.extensions?.argumentPath).toEqual(path);
      const after = await server.http<{ session: { messageCount: number } }>(
        '{session(id:"s"){messageCount}}',
      );
      expect(after.data?.session.messageCount).toBe(1);
      expect((await server.app.store.listTasks()).length).toBe(1);
    },
  );

  it('refuses a request body over the size limit with 413 before reading it', async () => {
    const { server } = await setup({ config: { limits: { ...DEFAULT_SERVER_LIMITS, maxBodyBytes: 2_000 } } });
    const response = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: `{deriverStatus{totalWorkUnits}} ${'#'.repeat(3_000)}` }),
    });
    expect(response.status).toBe(413);
    expect(
      ((await response.json()) as { errors: { extensions: { code: string } }[] }).errors[0]?.extensions.code,
    ).toBe('REQUEST_ENTITY_TOO_LARGE');
  });

  it('accepts the largest valid batch through the typed client (mutations go over HTTP)', async () => {
    const { client } = await setup({ config: { workerConcurrency: 0 } });
    await client.upsertSession({ id: 's', peers: [{ peerId: 'a' }] });
    const content = 'é'.repeat(65_535);
    const result = await client.addMessages({
      sessionId: 's',
      messages: Array.from({ length: 100 }, () => ({ peerId: 'a', content })),
    });
    expect(result.messages).toHaveLength(100);
    expect(result.messages[99]?.content).toBe(content);
    expect((await client.getSession('s'))?.messageCount).toBe(100);
  });

  it('reports the same codes through the typed client', async () => {
    const { client } = await setup();
    const error = await client
      .addMessages({ sessionId: 's', messages: [{ peerId: 'bad id', content: 'x' }] })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DeriverClientError);
    expect((error as DeriverClientError).code).toBe('BAD_USER_INPUT');
    expect((error as DeriverClientError).argumentPath).toEqual(['messages', 0, 'peerId']);
  });

  it('rejects the 11th observer with a clear message', async () => {
    const { client } = await setup();
    await client.upsertSession({
      id: 's',
      peers: Array.from({ length: 10 }, (_, i) => ({ peerId: `o${i}`, observeOthers: true })),
    });
    const error = (await client
      .upsertSession({ id: 's', peers: [{ peerId: 'o10', observeOthers: true }] })
      .catch((e: unknown) => e)) as DeriverClientError;
    expect(error.code).toBe('BAD_USER_INPUT');
    expect(error.message).toMatch(/at most 10 peers/);
    expect(await client.getPeer('o10')).toBeNull();
  });
});

describe('over Server-Sent Events', () => {
  it('streams the same subscription as text/event-stream until idle', async () => {
    const g = gate();
    const { server } = await setup({ handlers: { representation: g.handler, summary: unexpectedSummary } });
    await server.http('mutation{upsertSession(id:"s",peers:[{peerId:"a"}]){id}}');
    await server.http(
      'mutation{addMessages(sessionId:"s",messages:[{peerId:"a",content:"x"},{peerId:"a",content:"y"}]){enqueuedTasks}}',
    );
    const response = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({
        query:
          'subscription{deriverStatus(sessionId:"s",untilIdle:true,coalesceMs:0){totalWorkUnits pendingWorkUnits inProgressWorkUnits completedWorkUnits}}',
      }),
    });
    expect(response.headers.get('content-type')).toMatch(/text\/event-stream/);
    g.open();
    const text = await response.text(); // the stream ends when the subscription completes
    const events = text
      .split('\n\n')
      .filter((block) => block.includes('event: next'))
      .map(
        (block) =>
          JSON.parse(
            block
              .split('\n')
              .find((l) => l.startsWith('data: '))!
              .slice(6),
          ).data.deriverStatus,
      );
    expect(events[0]).toMatchObject({ totalWorkUnits: 2, completedWorkUnits: 0 });
    expect(events.at(-1)).toEqual({
      totalWorkUnits: 2,
      pendingWorkUnits: 0,
      inProgressWorkUnits: 0,
      completedWorkUnits: 2,
    });
    expect(text).toMatch(/event: complete/);
  });
});
