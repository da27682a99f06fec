import { createSchema, createYoga } from 'graphql-yoga';
import { afterEach, describe, expect, it } from 'vitest';
import { createSharedSubscribe, useSharedSubscriptionResults } from '../src/api/shared-results.ts';
import { createDeriverClient, type DeriverClient, type DeriverStatus } from '../src/client/index.ts';
import { createLiveStatus, type LiveStatus } from '../src/live/live-status.ts';
import { type StatusCounts, sameStatusCounts } from '../src/status/counts.ts';
import { DONE, ReadyStream } from '../src/util/ready-stream.ts';
import { createHarness, type Harness, sendMessages, unexpectedSummary } from './helpers.ts';
import { gate, startTestServer, type TestServer } from './server-helpers.ts';

let h: Harness | undefined;
let live: LiveStatus | undefined;
let server: TestServer | undefined;
let clients: DeriverClient[] = [];
afterEach(async () => {
  for (const c of clients) await c.close();
  clients = [];
  live?.close();
  await h?.close();
  await server?.close();
  h = undefined;
  live = undefined;
  server = undefined;
});

async function liveHarness() {
  h = await createHarness();
  live = createLiveStatus({ status: h.status, windowMs: 0 });
  await h.deriver.upsertWorkspace({ id: 'default', settings: { summariesEnabled: false } });
  await h.deriver.upsertSession({ id: 'A', peers: [{ peerId: 'a' }] });
  await h.deriver.upsertSession({ id: 'B', peers: [{ peerId: 'b' }] });
  return { h, live };
}

describe('multiplexing', () => {
  it('gives subscribers with equal arguments equal events from one shared computation per change', async () => {
    const g = gate();
    server = await startTestServer({ handlers: { representation: g.handler, summary: unexpectedSummary } });
    await server.http(
      'mutation{upsertSession(id:"s",peers:[{peerId:"a"},{peerId:"b",observeOthers:true}]){id}}',
    );
    const SUBSCRIBERS = 20;
    const streams = Array.from({ length: SUBSCRIBERS }, () => {
      const client = createDeriverClient({ url: server!.url });
      clients.push(client);
      return client.watchDeriverStatus({ sessionId: 's' }, { coalesceMs: 0 });
    });
    const firsts = await Promise.all(streams.map((s) => s.next()));
    expect(firsts.every((f) => f.value?.totalWorkUnits === 0)).toBe(true);
    expect(server.app.live.stats()).toMatchObject({ topics: 1, subscribers: SUBSCRIBERS });

    let changes = 0;
    server.app.status.events.on('status:changed', () => void changes++);
    const before = server.app.live.stats().computations;
    await server.http(
      'mutation{addMessages(sessionId:"s",messages:[{peerId:"a",content:"x"},{peerId:"b",content:"y"}]){enqueuedTasks}}',
    );
    g.open();
    const sequences = await Promise.all(
      streams.map(async (stream) => {
        const seen: DeriverStatus[] = [];
        for await (const status of stream) {
          seen.push(status);
          if (status.completedWorkUnits === 3) break;
        }
        return seen;
      }),
    );
    for (const sequence of sequences) expect(sequence).toEqual(sequences[0]);
    // One status computation per change for the whole topic, not one per subscriber.
    expect(server.app.live.stats().computations - before).toBeLessThanOrEqual(changes);
    await expect.poll(() => server!.app.live.stats()).toMatchObject({ topics: 0, subscribers: 0 });
  });

  it('executes the selection set once per change and hands every subscriber the same result', async () => {
    let resolverCalls = 0;
    const shared = { n: 1 };
    let push: ((value: object) => void)[] = [];
    const yoga = createYoga({
      schema: createSchema({
        typeDefs: 'type Query { x: Int } type Event { n: Int } type Subscription { tick: Event }',
        resolvers: {
          Event: {
            n: (e: { n: number }) => {
              resolverCalls++;
              return e.n;
            },
          },
          Subscription: {
            tick: {
              subscribe: () => {
                // A ready stream holding the latest value pushed to it.
                let value: object | undefined;
                let listener = () => {};
                push.push((v) => {
                  value = v;
                  listener();
                });
                return new (class extends ReadyStream<object> {
                  read = () => (value === undefined ? undefined : { done: false as const, value });
                  onReadable = (l: () => void) => {
                    listener = l;
                  };
                  return = async () => DONE;
                })();
              },
              resolve: (e: object) => e,
            },
          },
        },
      }),
      plugins: [useSharedSubscriptionResults(createSharedSubscribe())],
    });
    const subscribeOnce = async () => {
      const enveloped = yoga.getEnveloped({});
      const document = enveloped.parse('subscription { tick { n } }');
      return (await enveloped.subscribe({
        schema: enveloped.schema,
        document,
        contextValue: await enveloped.contextFactory(),
      })) as AsyncIterator<unknown>;
    };
    const [one, two] = [await subscribeOnce(), await subscribeOnce()];
    const results = Promise.all([one.next(), two.next()]);
    // Each stream holds the value pushed to it until it is read, whenever its next() gets there.
    for (const p of push) p(shared);
    push = [];
    const [r1, r2] = await results;
    expect(r1.value).toEqual({ data: { tick: { n: 1 } } });
    expect(r2.value).toBe(r1.value);
    expect(resolverCalls).toBe(1);
  });

  it('wakes no subscriber filtered to session B for a change in session A', async () => {
    const { h, live } = await liveHarness();
    const b = await live.subscribe({ workspaceId: 'default', sessionId: 'B' });
    expect((await b.next()).value?.counts.totalWorkUnits).toBe(0);
    const computed = live.stats().computations;
    await sendMessages(h.deriver, { sessionId: 'A', peerId: 'a', count: 5 });
    expect((await h.status.get({ workspaceId: 'default', sessionId: 'A' })).totalWorkUnits).toBe(5);
    expect(live.stats().computations).toBe(computed);
    // Nothing arrives for B: the next read is answered by the change in B, not by anything before.
    const pending = b.next();
    await sendMessages(h.deriver, { sessionId: 'B', peerId: 'b', count: 1 });
    expect((await pending).value?.counts.totalWorkUnits).toBe(1);
    await b.return();
  });

  it('delivers every distinct state in order with a window of 0', async () => {
    const { h, live } = await liveHarness();
    const stream = await live.subscribe({ workspaceId: 'default', sessionId: 'A' }, { windowMs: 0 });
    const watched = await h.status.watch({ workspaceId: 'default', sessionId: 'A' });
    const expected: StatusCounts[] = [watched.counts()];
    h.status.events.on('status:changed', () => {
      const now = watched.counts();
      if (!sameStatusCounts(now, expected.at(-1)!)) expected.push(now);
    });
    const delivered: StatusCounts[] = [];
    const consumer = (async () => {
      for await (const view of stream) {
        delivered.push(view.counts);
        if (view.counts.completedWorkUnits === 30) break;
      }
    })();
    for (let i = 0; i < 10; i++) await sendMessages(h.deriver, { sessionId: 'A', peerId: 'a', count: 1 });
    h.startScheduler({
      concurrency: 1,
      claimBudget: 3,
      handlers: { representation: () => {}, summary: unexpectedSummary },
    });
    for (let i = 0; i < 20; i++) await sendMessages(h.deriver, { sessionId: 'A', peerId: 'a', count: 1 });
    await consumer;
    expect(delivered.length).toBeGreaterThan(20);
    expect(delivered).toEqual(expected);
  });

  it('frees the shared computation when the last subscriber leaves, with no leak over 10,000 cycles', async () => {
    const { h, live } = await liveHarness();
    await sendMessages(h.deriver, { sessionId: 'A', peerId: 'a', count: 1 });
    const cycle = async (i: number) => {
      const stream = await live.subscribe({
        workspaceId: 'default',
        sessionId: i % 2 ? 'A' : 'B',
        observerId: `o${i % 7}`,
      });
      await stream.next();
      await stream.return();
    };
    for (let i = 0; i < 10_000; i++) await cycle(i);
    // What is held afterwards, counted: no topic, subscriber or undelivered view; no filter still
    // watched; one kept sum per distinct filter (2 sessions x 7 observers), each read from the
    // store once however many cycles asked for it.
    expect(live.stats()).toMatchObject({ topics: 0, subscribers: 0, held: 0 });
    expect(h.status.stats()).toEqual({ rollups: 14, entries: 14, pinned: 0, reads: 14 });
  });

  it('frees topics over graphql-ws when clients unsubscribe or disconnect', async () => {
    server = await startTestServer();
    const client = createDeriverClient({ url: server.url });
    clients.push(client);
    for (let i = 0; i < 200; i++) {
      const stream = client.watchDeriverStatus({ sessionId: `s${i % 10}` });
      await stream.next();
      await stream.return();
    }
    const open = Array.from({ length: 5 }, (_, i) => client.watchDeriverStatus({ sessionId: `t${i}` }));
    await Promise.all(open.map((s) => s.next()));
    expect(server.app.live.stats()).toMatchObject({ topics: 5, subscribers: 5 });
    await client.close();
    await expect.poll(() => server!.app.live.stats()).toMatchObject({ topics: 0, subscribers: 0 });
  });
});
