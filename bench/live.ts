/**
 * Live status at scale, server and load generator in separate processes on loopback:
 * push latency at 1k and 10k graphql-ws subscribers, fan-out throughput against a raw `ws`
 * broadcast of the same bytes, idle detection against polling loops, RSS per idle subscription,
 * and coalescing under 10k+ task completions per second.
 *
 *   npm run bench:live                  (SUBSCRIBERS=1000,10000 to change the sizes,
 *                                        PHASES=latency,fanout,idle,messages,webhooks,load,cross,
 *                                        LATENCY_ROUNDS=150 rounds per latency pass,
 *                                        IDLE_ROUNDS=200, MESSAGE_ROUNDS=200 rounds of the waits)
 *
 * The `cross` phase (cross-instance.ts) needs PostgreSQL: TEST_DATABASE_URL, else an embedded one.
 *
 * Every latency figure has a raw twin measured in the same run: a plain `ws` server sends frames of
 * the same size to the same number of sockets, by the same topics and pacing, and each client
 * parses them (`latency-raw`). Our server is measured twice: with graphql-ws clients, and with
 * protocol clients that, like the twin's, only parse each frame; `latencyRatio` in the summary is
 * protocol / raw (the same client work on both sides), `graphqlWsLatencyRatio` graphql-ws / raw.
 * Each pass starts quiet (the previous pass's sockets closed and both processes' garbage
 * collected) and after 10 uncounted warm-up rounds.
 *
 * Latency uses one clock: the server stamps each event with the time of the status change
 * (`extensions.changedAt`, epoch ms from performance.timeOrigin + now()), the generator subtracts
 * it from its own receipt time. Both processes read the same system clock.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client } from 'graphql-ws';
import WebSocket from 'ws';
import {
  addMessages,
  COUNTS,
  type Counts,
  command,
  gql,
  now,
  rawUrl,
  releaseServer,
  serverRssKb,
  setupWorkspace,
} from './live-client.ts';
import {
  closeAll,
  connect,
  type EventLog,
  protocolSubscribers,
  quiesce,
  settle,
  subscribeAll,
} from './live-subscribers.ts';
import { idleDetection, messageWait } from './live-waits.ts';
import { webhookDelivery } from './live-webhooks.ts';
import { percentile, report, round } from './util.ts';

const SIZES = (process.env.SUBSCRIBERS ?? '1000,10000').split(',').map(Number);
/** Phases to run (PHASES=fanout to iterate on one); the summary reports what ran. */
const PHASES = new Set((process.env.PHASES ?? 'latency,fanout,idle,messages,webhooks,load,cross').split(','));

/**
 * The raw twin of the latency pattern: as many sockets, the same topics and pacing, frames of the
 * same size, each parsed by its client, from a plain `ws` server. Runs once our subscribers are
 * closed (the two sets of sockets at once would exceed the file limit at 10k).
 */
/** A p99 over the raw twin's p99 at the same size. */
const ratio = (ours: Record<string, number>, label: string): number | null =>
  rawP99[label] && ours[label] !== undefined ? round(ours[label] / rawP99[label], 2) : null;

async function rawLatencyTwin(
  size: number,
  label: string,
  eventBytes: number,
  rounds: number,
  /** Events per subscriber per round in our run (each task's pending, running, done). */
  perRound: number,
): Promise<void> {
  const rawLatencies: number[] = [];
  const rawSockets: WebSocket[] = [];
  await quiesce(0);
  for (let i = 0; i < size; i += 250) {
    await Promise.all(
      Array.from({ length: Math.min(250, size - i) }, (_, k) => {
        const socket = new WebSocket(rawUrl);
        rawSockets.push(socket);
        socket.on('message', (data) => {
          const receivedAt = now();
          const { changedAt } = JSON.parse(String(data)) as { changedAt: number };
          rawLatencies.push(receivedAt - changedAt);
        });
        return new Promise<void>((resolve) =>
          socket.once('open', () => {
            socket.send(String((i + k) % SESSIONS.length));
            resolve();
          }),
        );
      }),
    );
  }
  await sleep(300);
  await quiesce(size);
  const rawRounds = async (count: number) => {
    for (let r = 0; r < count; r++) {
      await command({ op: 'rawRound', group: r % SESSIONS.length, bytes: eventBytes, count: perRound });
      await sleep(pauseBetweenRounds(size));
    }
    const expected = (count * perRound * size) / SESSIONS.length;
    for (let waited = 0; rawLatencies.length < expected && waited < 5_000; waited += 20) await sleep(20);
  };
  await rawRounds(WARMUP_ROUNDS);
  rawLatencies.length = 0;
  await rawRounds(rounds);
  for (const socket of rawSockets) socket.terminate();
  rawLatencies.sort((a, b) => a - b);
  rawP99[label] = round(percentile(rawLatencies, 99), 2);
  report({
    bench: 'live',
    phase: 'latency-raw',
    subscribers: size,
    topics: SESSIONS.length,
    events: rawLatencies.length,
    frameBytes: eventBytes,
    p50Ms: round(percentile(rawLatencies, 50), 2),
    p99Ms: rawP99[label],
    latencyRatio: ratio(protocolP99, label),
    graphqlWsLatencyRatio: ratio(p99, label),
  });
}

/**
 * Fan-out: 100 changes to one filter that every client subscribes to, against a raw broadcast.
 * Closes the clients.
 */
let fanoutRatio: number | null = null;
async function fanout(clients: Client[], size: number): Promise<void> {
  const fan = await subscribeAll(clients, () => ({ w: 'fan', s: 'f', c: 0 }));
  const CHANGES = 100;
  await quiesce(size);
  const { started: fanStart } = (await command({
    op: 'churn',
    workspaceId: 'fan',
    sessionId: 'f',
    changes: CHANGES,
  })) as { started: number };
  await settle(fan.events, 200);
  const delivered = fan.events.size;
  const lastReceipt = fan.events.receivedAt.reduce((max, t) => Math.max(max, t), 0);
  const ourRate = delivered / ((lastReceipt - fanStart) / 1000);
  const frameBytes = JSON.stringify({
    id: '00000000-0000-0000-0000-000000000000',
    type: 'next',
    payload: {
      data: { deriverStatus: fan.events.sample() },
      extensions: { changedAt: 0, publishedAt: 0 },
    },
  }).length;
  fan.unsubscribe();
  await closeAll(clients); // the raw sockets next would exceed the file limit beside them at 10k

  const rawClients: WebSocket[] = [];
  let rawReceived = 0;
  let rawLast = 0;
  for (let i = 0; i < size; i += 250) {
    await Promise.all(
      Array.from({ length: Math.min(250, size - i) }, () => {
        const socket = new WebSocket(rawUrl);
        rawClients.push(socket);
        socket.on('message', () => {
          rawReceived++;
          rawLast = now();
        });
        return new Promise((resolve) => socket.once('open', resolve));
      }),
    );
  }
  await quiesce(size);
  const { started: rawStart } = (await command({ op: 'broadcast', bytes: frameBytes, count: CHANGES })) as {
    started: number;
  };
  while (rawReceived < CHANGES * size) await sleep(20);
  const rawRate = rawReceived / ((rawLast - rawStart) / 1000);
  for (const socket of rawClients) socket.terminate();
  fanoutRatio = round(ourRate / rawRate, 2);
  report({
    bench: 'live',
    phase: 'fanout',
    subscribers: size,
    changes: CHANGES,
    delivered,
    frameBytes,
    eventsPerSecond: Math.round(ourRate),
    rawEventsPerSecond: Math.round(rawRate),
    ratio: fanoutRatio,
  });
}

// ---- 1. push latency (and RSS per idle subscription at the largest size) --------------------

const SESSIONS = Array.from({ length: 10 }, (_, i) => `s${i}`);
await setupWorkspace('lat', SESSIONS);
await command({ op: 'mode', mode: { kind: 'noop' } });
/** p99 by size label: graphql-ws clients, protocol clients (JSON.parse only), the raw twin. */
const p99: Record<string, number> = {};
const protocolP99: Record<string, number> = {};
const rawP99: Record<string, number> = {};
/**
 * Memory per idle subscription here (largest size), live after GC and by RSS, in a process that
 * ran the phases before: its ratio to a raw socket is bench:memory's (fresh processes; measured
 * here after our sockets, the raw twin came out at a third of what a socket holds).
 */
let kbPerSubscription = Number.NaN;
let rssKbPerSubscription = Number.NaN;
const ROUNDS = PHASES.has('latency') ? Number(process.env.LATENCY_ROUNDS ?? 150) : 0;
/** Rounds run and not counted before each latency pass (ours and raw): one per topic. */
const WARMUP_ROUNDS = 10;
const pauseBetweenRounds = (size: number) => (size >= 10_000 ? 60 : 25);
const latencyVariables = (i: number) => ({ w: 'lat', s: SESSIONS[i % SESSIONS.length], c: 0 });

/** The latency pattern: one message per round to one session (a task queued, run and done). */
async function latencyRounds(size: number, events: EventLog) {
  await quiesce(size);
  const oneRound = async (r: number) => {
    await addMessages('lat', SESSIONS[r % SESSIONS.length]!, 1);
    await sleep(pauseBetweenRounds(size));
  };
  for (let r = 0; r < WARMUP_ROUNDS; r++) await oneRound(r);
  await settle(events);
  events.clear();
  const started = now();
  for (let r = 0; r < ROUNDS; r++) await oneRound(r);
  await settle(events);
  const latencies = events.spans(events.changedAt, events.receivedAt);
  // Where the time goes: until the view is computed (server), then until it is read (send + client).
  const toPublish = events.spans(events.changedAt, events.publishedAt);
  const toReceipt = events.spans(events.publishedAt, events.receivedAt);
  return {
    figures: {
      events: latencies.length,
      seconds: round((now() - started) / 1000, 1),
      p50Ms: round(percentile(latencies, 50), 2),
      p99Ms: round(percentile(latencies, 99), 2),
      maxMs: round(latencies.at(-1) ?? Number.NaN, 2),
      changeToPublishP99Ms: round(percentile(toPublish, 99), 2),
      publishToReceiptP99Ms: round(percentile(toReceipt, 99), 2),
    },
  };
}

for (const size of SIZES) {
  const label = size >= 1000 ? `${size / 1000}k` : String(size);
  // Memory held per idle subscription: what the server holds live after a full collection (heap
  // and buffers), before and after, as for the raw twin's sockets; and its RSS (which a previous
  // phase's freed pages make move by more than a subscription holds at small sizes).
  const liveBefore = await quiesce(0);
  const rssBefore = serverRssKb();
  const clients = await connect(size);
  const pool = await subscribeAll(clients, latencyVariables);
  await sleep(500);
  const liveAfter = await quiesce(size);
  const rssAfter = serverRssKb();
  if (size === Math.max(...SIZES)) {
    kbPerSubscription = (liveAfter - liveBefore) / size;
    rssKbPerSubscription = (rssAfter - rssBefore) / size;
  }
  const { figures } = await latencyRounds(size, pool.events);
  p99[label] = figures.p99Ms;
  const perRound = Math.max(1, Math.round(figures.events / ((ROUNDS * size) / SESSIONS.length)));
  const eventBytes = JSON.stringify({
    id: '00000000-0000-0000-0000-000000000000',
    type: 'next',
    payload: { data: { deriverStatus: pool.events.sample() }, extensions: { changedAt: 0, publishedAt: 0 } },
  }).length;
  report({
    bench: 'live',
    phase: 'latency',
    clients: 'graphql-ws',
    subscribers: size,
    topics: SESSIONS.length,
    ...figures,
    serverRssKbBefore: rssBefore,
    serverRssKbAfter: rssAfter,
    kbPerSubscription: round((liveAfter - liveBefore) / size, 1),
    rssKbPerSubscription: round((rssAfter - rssBefore) / size, 1),
  });
  pool.unsubscribe();

  // ---- 2. fan-out throughput against a raw ws broadcast of the same bytes (largest size) ------
  if (size === Math.max(...SIZES) && PHASES.has('fanout')) await fanout(clients, size);
  else await closeAll(clients);

  if (PHASES.has('latency')) {
    // The same rounds with clients that only parse each frame, as the raw twin's do.
    const protocol = await protocolSubscribers(size, latencyVariables);
    const { figures: protocolFigures } = await latencyRounds(size, protocol.events);
    protocol.close();
    protocolP99[label] = protocolFigures.p99Ms;
    report({
      bench: 'live',
      phase: 'latency',
      clients: 'protocol',
      subscribers: size,
      topics: SESSIONS.length,
      ...protocolFigures,
    });
    await rawLatencyTwin(size, label, eventBytes, ROUNDS, perRound);
  }
}

const statusQuery = `query($w:ID,$s:ID){deriverStatus(workspaceId:$w,sessionId:$s){${COUNTS}}}`;
let finalExact: boolean | null = null;

// ---- 3. what a client waits for (live-waits.ts), and webhooks (live-webhooks.ts) ---------------
const idle = PHASES.has('idle') ? await idleDetection() : null;
const messages = PHASES.has('messages') ? await messageWait() : null;
const webhooks = PHASES.has('webhooks') ? await webhookDelivery() : null;

// ---- 4. coalescing under 10k+ task completions per second ------------------------------------
if (PHASES.has('load')) {
  await command({ op: 'mode', mode: { kind: 'noop' } });
  const LOAD_SESSIONS = Array.from({ length: 10 }, (_, i) => `l${i}`);
  await setupWorkspace('load', LOAD_SESSIONS);
  const loadClients = await connect(1000);
  const WINDOW = 100;
  const load = await subscribeAll(loadClients, (i) => ({ w: 'load', s: LOAD_SESSIONS[i % 10] }));
  const TASKS = 40_000;
  // Enqueue while the workers are held, then let them go: completions run at the scheduler's pace.
  await command({ op: 'mode', mode: { kind: 'block' } });
  for (let i = 0; i < TASKS / 100; i++) await addMessages('load', LOAD_SESSIONS[i % 10]!, 100);
  const loadStart = now();
  await command({ op: 'mode', mode: { kind: 'noop' } });
  for (;;) {
    const { status } = (await command({ op: 'status', workspaceId: 'load' })) as { status: Counts };
    if (status.completedWorkUnits === TASKS) break;
    await sleep(5);
  }
  const loadSeconds = (now() - loadStart) / 1000;
  await settle(load.events, 400);
  let maxPerWindow = 0;
  const bySubscriber = loadClients.map((): number[] => []);
  for (const [k, t] of load.events.publishedAt.entries())
    bySubscriber[load.events.subscriber[k] ?? 0]?.push(t);
  for (const published of bySubscriber) {
    const times = published.sort((a, b) => a - b);
    for (let i = 0, j = 0; i < times.length; i++) {
      while ((times[i] ?? 0) - (times[j] ?? 0) >= WINDOW) j++;
      maxPerWindow = Math.max(maxPerWindow, i - j + 1);
    }
  }
  finalExact = true;
  for (const [i, last] of load.events.last.entries()) {
    const session = LOAD_SESSIONS[i % 10];
    const { deriverStatus } = await gql<{ deriverStatus: Counts }>(statusQuery, { w: 'load', s: session });
    if (JSON.stringify(last) !== JSON.stringify(deriverStatus)) finalExact = false;
  }
  load.unsubscribe();
  await closeAll(loadClients);
  report({
    bench: 'live',
    phase: 'coalescing-under-load',
    subscribers: 1000,
    tasks: TASKS,
    completionsPerSecond: Math.round(TASKS / loadSeconds),
    windowMs: WINDOW,
    eventsPerSubscriber: round(load.events.size / 1000, 1),
    maxEventsPerSubscriberPerWindow: maxPerWindow,
    finalExact,
  });
}

releaseServer();

// ---- 5. across instances: two server processes on one PostgreSQL (see cross-instance.ts) --------

let cross: { crossInstanceP99Ms: number; singleInstanceP99Ms: number } | undefined;
if (PHASES.has('cross')) {
  const { crossInstance } = await import('./cross-instance.ts');
  const result = await crossInstance();
  report({ bench: 'live', phase: 'cross-instance', ...result });
  cross = result;
}

const sizes = Object.keys(p99);
report({
  bench: 'live',
  p99Ms: Object.fromEntries(sizes.map((k) => [k, p99[k]])),
  protocolP99Ms: Object.fromEntries(sizes.map((k) => [k, protocolP99[k] ?? null])),
  rawP99Ms: Object.fromEntries(sizes.map((k) => [k, rawP99[k] ?? null])),
  latencyRatio: Object.fromEntries(sizes.map((k) => [k, ratio(protocolP99, k)])),
  graphqlWsLatencyRatio: Object.fromEntries(sizes.map((k) => [k, ratio(p99, k)])),
  fanoutRatio,
  idleMs: idle?.idleMs ?? null,
  messageWaitP99Ms: messages?.messageWaitP99Ms ?? null,
  idleWaitMs: messages?.idleWaitMs ?? null,
  webhookP99Ms: webhooks?.webhookP99Ms ?? null,
  webhookEventsPerSecond: webhooks?.webhookEventsPerSecond ?? null,
  honchoPollIdleMs: idle?.honchoPollIdleMs ?? null,
  honchoSdkPollIdleMs: idle?.honchoSdkPollIdleMs ?? null,
  poll200IdleMs: idle?.poll200IdleMs ?? null,
  kbPerSubscription: round(kbPerSubscription, 1),
  rssKbPerSubscription: round(rssKbPerSubscription, 1),
  finalExact,
  crossInstanceP99Ms: cross?.crossInstanceP99Ms ?? null,
  singleInstanceP99Ms: cross?.singleInstanceP99Ms ?? null,
});
