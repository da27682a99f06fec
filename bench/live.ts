/**
 * Live status at scale, server and load generator in separate processes on loopback:
 * push latency at 1k and 10k graphql-ws subscribers, fan-out throughput against a raw `ws`
 * broadcast of the same bytes, idle detection against polling loops, RSS per idle subscription,
 * and coalescing under 10k+ task completions per second.
 *
 *   npm run bench:live                  (SUBSCRIBERS=1000,10000 to change the sizes,
 *                                        PHASES=latency,fanout,idle,messages,webhooks,load,cross,
 *                                        LATENCY_ROUNDS=150 rounds per latency pass)
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
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { type Client, createClient } from 'graphql-ws';
import WebSocket from 'ws';
import type { ServerCommand } from './live-server.ts';
import { percentile, report, round } from './util.ts';

const SIZES = (process.env.SUBSCRIBERS ?? '1000,10000').split(',').map(Number);
/** Phases to run (PHASES=fanout to iterate on one); the summary reports what ran. */
const PHASES = new Set((process.env.PHASES ?? 'latency,fanout,idle,messages,webhooks,load,cross').split(','));
const now = () => performance.timeOrigin + performance.now();
type Counts = {
  totalWorkUnits: number;
  completedWorkUnits: number;
  inProgressWorkUnits: number;
  pendingWorkUnits: number;
  failedWorkUnits: number;
};
const COUNTS = 'totalWorkUnits completedWorkUnits inProgressWorkUnits pendingWorkUnits failedWorkUnits';
const LATENCY_SUBSCRIPTION = `subscription($w:ID,$s:ID,$c:Int){deriverStatus(workspaceId:$w,sessionId:$s,coalesceMs:$c){${COUNTS}}}`;

// ---- the server process ---------------------------------------------------------------------

const child: ChildProcess = spawn(
  process.execPath,
  [
    ...(process.env.BENCH_PROFILE_DIR
      ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE_DIR}`]
      : []),
    '--expose-gc',
    '--import',
    'tsx',
    fileURLToPath(new URL('./live-server.ts', import.meta.url)),
  ],
  { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
);
const replies = new Map<number, (message: Record<string, unknown>) => void>();
let commandId = 0;
const ready = new Promise<{ url: string; rawUrl: string }>((resolve) => {
  child.on('message', (message: Record<string, unknown>) => {
    if (message.ready) resolve(message as { url: string; rawUrl: string });
    else replies.get(message.id as number)?.(message);
  });
});
type Command = ServerCommand extends infer C ? (C extends ServerCommand ? Omit<C, 'id'> : never) : never;
function command(c: Command): Promise<Record<string, unknown>> {
  const id = ++commandId;
  return new Promise((resolve) => {
    replies.set(id, resolve);
    child.send({ ...c, id });
  });
}
const serverRssKb = () =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1]);

const { url, rawUrl } = await ready;
/**
 * GraphQL over HTTP with node:http and kept-alive connections: the cheapest real client, so the
 * generator's own cost per round stays small beside the raw twin's rounds (an IPC message each).
 * (undici's fetch here added a fifth to a third to the 1k latency p99 of our passes.)
 */
const httpAgent = new Agent({ keepAlive: true, maxSockets: 4 });
function gql<T = Record<string, unknown>>(query: string, variables?: object): Promise<T> {
  const payload = JSON.stringify({ query, variables });
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        agent: httpAgent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          const body = JSON.parse(Buffer.concat(chunks).toString()) as { data?: T; errors?: unknown };
          if (body.errors) reject(new Error(JSON.stringify(body.errors)));
          else resolve(body.data as T);
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}
async function setupWorkspace(workspaceId: string, sessions: string[]) {
  await gql('mutation($w:ID!){upsertWorkspace(id:$w,settings:{summariesEnabled:false}){id}}', {
    w: workspaceId,
  });
  for (const id of sessions) {
    await gql(
      'mutation($w:ID,$id:ID!,$p:ID!){upsertSession(workspaceId:$w,id:$id,peers:[{peerId:$p}]){id}}',
      {
        w: workspaceId,
        id,
        p: `p-${id}`,
      },
    );
  }
}
const addMessages = (workspaceId: string, sessionId: string, count: number) =>
  gql(
    'mutation($w:ID,$s:ID!,$m:[MessageInput!]!){addMessages(workspaceId:$w,sessionId:$s,messages:$m){enqueuedTasks}}',
    {
      w: workspaceId,
      s: sessionId,
      m: Array.from({ length: count }, () => ({ peerId: `p-${sessionId}`, content: 'x' })),
    },
  );

// ---- subscriber pools -----------------------------------------------------------------------

/**
 * What a pool's subscribers received after their snapshots, in columns of numbers (no object per
 * event: at 10k subscribers a pass receives 450,000 events, and an object each grew the generator's
 * heap until its own collections stalled the receipts being timed), and each one's last counts.
 */
class EventLog {
  readonly subscriber: number[] = [];
  readonly changedAt: number[] = [];
  readonly publishedAt: number[] = [];
  readonly receivedAt: number[] = [];
  readonly last: (Counts | undefined)[];

  constructor(subscribers: number) {
    this.last = new Array(subscribers).fill(undefined);
  }

  add(i: number, data: Counts, stamps: { changedAt: number; publishedAt: number }, receivedAt: number): void {
    this.subscriber.push(i);
    this.changedAt.push(stamps.changedAt);
    this.publishedAt.push(stamps.publishedAt);
    this.receivedAt.push(receivedAt);
    this.last[i] = data;
  }

  get size(): number {
    return this.receivedAt.length;
  }

  /** Forgets the events so far (the last counts stay). */
  clear(): void {
    for (const column of [this.subscriber, this.changedAt, this.publishedAt, this.receivedAt])
      column.length = 0;
  }

  /** `b - a` for every event, sorted. */
  spans(a: number[], b: number[]): number[] {
    return b.map((value, k) => value - (a[k] ?? Number.NaN)).sort((x, y) => x - y);
  }

  /** Any subscriber's last counts (what an event carried). */
  sample(): Counts | undefined {
    return this.last.find((counts) => counts !== undefined);
  }
}

async function connect(n: number): Promise<Client[]> {
  const clients: Client[] = [];
  for (let i = 0; i < n; i += 250) {
    const batch = Array.from({ length: Math.min(250, n - i) }, () => {
      const client = createClient({
        url: url.replace('http', 'ws'),
        webSocketImpl: WebSocket,
        lazy: false,
        retryAttempts: 0,
      });
      clients.push(client);
      return new Promise<void>((resolve, reject) => {
        client.on('connected', () => resolve());
        client.on('closed', (e) => reject(new Error(`closed: ${JSON.stringify(e)}`)));
      });
    });
    await Promise.all(batch);
  }
  return clients;
}

/** Subscribes every client; resolves once each has its snapshot. Events after it go to `events`. */
async function subscribeAll(clients: Client[], variables: (i: number) => Record<string, unknown>) {
  const events = new EventLog(clients.length);
  const snapshots: Promise<void>[] = [];
  const unsubscribe = clients.map((client, i) => {
    let first = true;
    let resolveSnapshot!: () => void;
    snapshots.push(
      new Promise<void>((resolve) => {
        resolveSnapshot = resolve;
      }),
    );
    return client.subscribe<{ deriverStatus: Counts }>(
      {
        query: LATENCY_SUBSCRIPTION,
        variables: variables(i),
      },
      {
        next(result) {
          const receivedAt = now();
          if (first) {
            first = false;
            resolveSnapshot();
            return;
          }
          const ext = result.extensions as { changedAt: number; publishedAt: number };
          events.add(i, result.data!.deriverStatus, ext, receivedAt);
        },
        error: (error) => console.error('subscription error', error),
        complete: () => {},
      },
    );
  });
  await Promise.all(snapshots);
  return {
    events,
    unsubscribe: () => {
      for (const u of unsubscribe) u();
    },
  };
}
const closeAll = async (clients: Client[]) => {
  await Promise.all(clients.map((c) => c.dispose()));
};
/**
 * Before a measured pass: the server has handled the previous pass's closes and collected its
 * garbage, and so has this process (run with --expose-gc), so that neither pays for the previous
 * pass during this one.
 */
/** Waits until the server has `sockets` open, collects its garbage; returns its live memory (KB). */
async function quiesce(sockets: number): Promise<number> {
  const { liveKb } = await command({ op: 'quiesce', sockets });
  (globalThis as { gc?: () => void }).gc?.();
  return Number(liveKb);
}
/**
 * Subscribers that speak graphql-transport-ws over plain `ws` sockets and do what the raw twin's
 * clients do with each frame (JSON.parse), so that their latency differs from the twin's only by
 * what the server does. Resolves once each has its snapshot; events after it go to `events`.
 */
async function protocolSubscribers(n: number, variables: (i: number) => Record<string, unknown>) {
  const events = new EventLog(n);
  const sockets: WebSocket[] = [];
  for (let i = 0; i < n; i += 250) {
    await Promise.all(
      Array.from({ length: Math.min(250, n - i) }, (_, k) => {
        const index = i + k;
        const socket = new WebSocket(url.replace('http', 'ws'), 'graphql-transport-ws');
        sockets.push(socket);
        let first = true;
        return new Promise<void>((resolve) => {
          socket.once('open', () => socket.send(JSON.stringify({ type: 'connection_init' })));
          socket.on('message', (data) => {
            const receivedAt = now();
            const message = JSON.parse(String(data));
            if (message.type === 'connection_ack') {
              socket.send(
                JSON.stringify({
                  id: '1',
                  type: 'subscribe',
                  payload: { query: LATENCY_SUBSCRIPTION, variables: variables(index) },
                }),
              );
            } else if (message.type === 'next') {
              if (!first) {
                events.add(index, message.payload.data.deriverStatus, message.payload.extensions, receivedAt);
              }
              first = false;
              resolve();
            }
          });
        });
      }),
    );
  }
  return {
    events,
    close: () => {
      for (const socket of sockets) socket.terminate();
    },
  };
}

async function settle(events: EventLog, quietMs = 300): Promise<void> {
  let last = -1;
  for (;;) {
    const n = events.size;
    if (n === last) return;
    last = n;
    await sleep(quietMs);
  }
}

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
  // The memory twin of an idle subscription: an idle raw socket in its group, same process.
  const liveBefore = await quiesce(0);
  const rssBefore = serverRssKb();
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
  const liveAfter = await quiesce(size);
  if (size === Math.max(...SIZES)) {
    kbPerRawSocket = (liveAfter - liveBefore) / size;
    rssKbPerRawSocket = (serverRssKb() - rssBefore) / size;
  }
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
let kbPerSubscription = Number.NaN;
/** The same measure for an idle raw `ws` socket in its broadcast group (the raw twin, largest size). */
let kbPerRawSocket = Number.NaN;
/** Both by RSS too (what the process holds; moved by a previous phase's freed pages at 1k). */
let rssKbPerSubscription = Number.NaN;
let rssKbPerRawSocket = Number.NaN;
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
const ours: number[] = [];
const honcho: number[] = [];
/** Honcho's own 1.x SDK (`@honcho-ai/sdk` 1.5.0): `session.pollDeriverStatus()` over its v2 route. */
const honchoSdk: number[] = [];
const poll200: number[] = [];
let idleMs = Number.NaN;
let finalExact: boolean | null = null;
const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : Number.NaN);

// ---- 3. idle detection: waitForIdle against polling loops, same workload, same run ----------
if (PHASES.has('idle')) {
  await command({ op: 'mode', mode: { kind: 'delay', ms: 30 } });
  const [idleClient] = await connect(1);
  const { Honcho } = await import('honcho-sdk-v1');
  const honchoV1 = new Honcho({ baseURL: new URL(url).origin, workspaceId: 'idle', maxRetries: 0 });
  const honchoRequests: number[] = [];
  const poll200Requests: number[] = [];

  async function pollUntilIdle(w: string, s: string, sleepFor: (c: Counts) => number, requests: number[]) {
    let n = 0;
    for (;;) {
      n++;
      const { deriverStatus } = await gql<{ deriverStatus: Counts }>(statusQuery, { w, s });
      if (deriverStatus.pendingWorkUnits === 0 && deriverStatus.inProgressWorkUnits === 0) {
        requests.push(n);
        return now();
      }
      await sleep(sleepFor(deriverStatus));
    }
  }
  function waitForIdle(w: string, s: string): Promise<{ detectedAt: number; completedAt: number }> {
    return new Promise((resolve) => {
      let last: { changedAt: number } | undefined;
      idleClient!.subscribe<{ deriverStatus: Counts }>(
        {
          query: `subscription($w:ID,$s:ID){deriverStatus(workspaceId:$w,sessionId:$s,untilIdle:true,coalesceMs:0){${COUNTS}}}`,
          variables: { w, s },
        },
        {
          next: (result) => {
            last = result.extensions as { changedAt: number };
          },
          error: (error) => console.error(error),
          complete: () => resolve({ detectedAt: now(), completedAt: last?.changedAt ?? Number.NaN }),
        },
      );
    });
  }
  const SHARED_ROUNDS = 5;
  const OWN_ROUNDS = 45;
  for (let r = 0; r < SHARED_ROUNDS + OWN_ROUNDS; r++) {
    const session = `idle${r}`;
    await gql(
      'mutation($s:ID!){upsertSession(workspaceId:"idle",id:$s,peers:[{peerId:"a"},{peerId:"b",observeOthers:true},{peerId:"c",observeOthers:true}]){id}}',
      { s: session },
    );
    await gql(
      'mutation($s:ID!){addMessages(workspaceId:"idle",sessionId:$s,messages:[{peerId:"a",content:"hi"}]){enqueuedTasks}}',
      { s: session },
    );
    const shared = r < SHARED_ROUNDS;
    const [mine, h, p, sdk] = await Promise.all([
      waitForIdle('idle', session),
      shared
        ? pollUntilIdle(
            'idle',
            session,
            (c) => Math.max(1000, (c.pendingWorkUnits + c.inProgressWorkUnits) * 1000),
            honchoRequests,
          )
        : null,
      shared ? pollUntilIdle('idle', session, () => 200, poll200Requests) : null,
      shared
        ? honchoV1
            .session(session)
            .then((s) => s.pollDeriverStatus())
            .then(() => now())
        : null,
    ]);
    ours.push(mine.detectedAt - mine.completedAt);
    if (h !== null) honcho.push(h - mine.completedAt);
    if (p !== null) poll200.push(p - mine.completedAt);
    if (sdk !== null) honchoSdk.push(sdk - mine.completedAt);
  }
  await closeAll([idleClient!]);
  const sortedOurs = [...ours].sort((a, b) => a - b);
  idleMs = round(percentile(sortedOurs, 99), 2);
  report({
    bench: 'live',
    phase: 'idle-detection',
    workload: '3 tasks of 30 ms per round',
    rounds: ours.length,
    waitForIdle: { p50Ms: round(percentile(sortedOurs, 50), 2), p99Ms: idleMs, requestsPerRound: 1 },
    honchoPoll: {
      meanMs: round(mean(honcho), 1),
      maxMs: round(Math.max(...honcho), 1),
      requestsPerRound: mean(honchoRequests),
    },
    honchoSdkPoll: {
      sdk: '@honcho-ai/sdk 1.5.0 session.pollDeriverStatus() over /v2',
      meanMs: round(mean(honchoSdk), 1),
      maxMs: round(Math.max(...honchoSdk), 1),
    },
    poll200ms: {
      meanMs: round(mean(poll200), 1),
      maxMs: round(Math.max(...poll200), 1),
      requestsPerRound: mean(poll200Requests),
    },
  });
}

// ---- 3b. waiting for your messages while other sessions keep the queue busy --------------------
let messageWaitP99Ms = Number.NaN;
let idleWaitMs = Number.NaN;
if (PHASES.has('messages')) {
  await command({ op: 'mode', mode: { kind: 'delay', ms: 30 } });
  const [waiter] = await connect(1);
  await setupWorkspace('msg', ['busy']);
  // One session's unit works through 300 tasks of 30 ms (about 9 s): the queue is never idle meanwhile.
  for (let i = 0; i < 3; i++) await addMessages('msg', 'busy', 100);
  const phaseStart = now();
  /** When the whole workspace goes idle: what waiting for an empty queue would wait for. */
  const workspaceIdle = new Promise<number>((resolve) => {
    waiter!.subscribe(
      { query: `subscription{deriverStatus(workspaceId:"msg",untilIdle:true){${COUNTS}}}` },
      { next: () => {}, error: (error) => console.error(error), complete: () => resolve(now()) },
    );
  });
  /** Completes at the last change of the session's tasks; `changedAt` of its last event is that commit. */
  const sessionDone = (session: string) =>
    new Promise<number>((resolve) => {
      let last: { changedAt: number } | undefined;
      waiter!.subscribe<{ deriverStatus: Counts }>(
        {
          query: `subscription($s:ID){deriverStatus(workspaceId:"msg",sessionId:$s,untilIdle:true,coalesceMs:0){${COUNTS}}}`,
          variables: { s: session },
        },
        {
          next: (result) => {
            last = result.extensions as { changedAt: number };
          },
          error: (error) => console.error(error),
          complete: () => resolve(last?.changedAt ?? Number.NaN),
        },
      );
    });
  const messagesDone = (ids: string[]) =>
    new Promise<number>((resolve) => {
      waiter!.subscribe(
        {
          query:
            'subscription($ids:[ID!]!){messageDerivation(workspaceId:"msg",messageIds:$ids){done total}}',
          variables: { ids },
        },
        { next: () => {}, error: (error) => console.error(error), complete: () => resolve(now()) },
      );
    });
  const waits: number[] = [];
  const roundStarts: number[] = [];
  for (let r = 0; r < 40; r++) {
    const session = `m${r}`;
    await gql(
      'mutation($s:ID!){upsertSession(workspaceId:"msg",id:$s,peers:[{peerId:"a"},{peerId:"b",observeOthers:true}]){id}}',
      { s: session },
    );
    roundStarts.push(now());
    const sent = await gql<{ addMessages: { messages: { id: string }[] } }>(
      'mutation($s:ID!){addMessages(workspaceId:"msg",sessionId:$s,messages:[{peerId:"a",content:"hi"}]){messages{id}}}',
      { s: session },
    );
    const [committedAt, resolvedAt] = await Promise.all([
      sessionDone(session),
      messagesDone(sent.addMessages.messages.map((m) => m.id)),
    ]);
    waits.push(resolvedAt - committedAt);
  }
  const roundsEnd = now();
  const idleAt = await workspaceIdle;
  await closeAll([waiter!]);
  const sorted = [...waits].sort((a, b) => a - b);
  messageWaitP99Ms = round(percentile(sorted, 99), 2);
  idleWaitMs = round(mean(roundStarts.map((start) => idleAt - start)), 0);
  report({
    bench: 'live',
    phase: 'message-wait',
    workload: 'a message of 2 tasks (30 ms each) per round while another session works through 300 tasks',
    rounds: waits.length,
    messageWait: { p50Ms: round(percentile(sorted, 50), 2), p99Ms: messageWaitP99Ms },
    roundsSeconds: round((roundsEnd - phaseStart) / 1000, 1),
    idleWaitMs,
  });
}

// ---- 3c. webhooks: from the commit that drains a unit to the receiver, and events per second -----
let webhookP99Ms = Number.NaN;
let webhookEventsPerSecond = Number.NaN;
if (PHASES.has('webhooks')) {
  await command({ op: 'mode', mode: { kind: 'noop' } });
  const { createServer } = await import('node:http');
  /** Receipt time of each event, and its commit time (the body's timestamp, the store's clock). */
  const arrivals: { receivedAt: number; committedAt: number }[] = [];
  let onArrival: () => void = () => {};
  const hooks = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const receivedAt = now();
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { timestamp: string };
      arrivals.push({ receivedAt, committedAt: Date.parse(body.timestamp) });
      response.writeHead(200).end();
      onArrival();
    });
  });
  await new Promise<void>((resolve) => hooks.listen(0, '127.0.0.1', resolve));
  const hookUrl = `http://127.0.0.1:${(hooks.address() as { port: number }).port}/`;
  await gql('mutation($w:ID!){upsertWorkspace(id:$w,settings:{summariesEnabled:false}){id}}', { w: 'hooks' });
  await gql(
    'mutation($u:String!){createWebhook(workspaceId:"hooks",url:$u,events:[QUEUE_EMPTY],secret:"bench-secret-0123456789"){id}}',
    { u: hookUrl },
  );
  const arrived = (n: number) =>
    new Promise<void>((resolve) => {
      onArrival = () => {
        if (arrivals.length >= n) resolve();
      };
      onArrival();
    });
  // Latency: one unit drains at a time.
  const ROUNDS = 60;
  for (let r = 0; r < ROUNDS; r++) {
    await gql('mutation($s:ID!){upsertSession(workspaceId:"hooks",id:$s,peers:[{peerId:"a"}]){id}}', {
      s: `h${r}`,
    });
    await addMessages('hooks', `h${r}`, 1);
    await arrived(r + 1);
  }
  const latencies = arrivals.map((a) => a.receivedAt - a.committedAt).sort((a, b) => a - b);
  webhookP99Ms = round(percentile(latencies, 99), 1);
  // Throughput: 1,000 units drain as fast as the scheduler runs them.
  const BURST = 1_000;
  const before = arrivals.length;
  await command({ op: 'mode', mode: { kind: 'block' } });
  for (let i = 0; i < BURST; i++) {
    await gql('mutation($s:ID!){upsertSession(workspaceId:"hooks",id:$s,peers:[{peerId:"a"}]){id}}', {
      s: `b${i}`,
    });
    await addMessages('hooks', `b${i}`, 1);
  }
  const burstStart = now();
  await command({ op: 'mode', mode: { kind: 'noop' } });
  await arrived(before + BURST);
  webhookEventsPerSecond = Math.round(BURST / ((now() - burstStart) / 1000));
  hooks.close();
  report({
    bench: 'live',
    phase: 'webhooks',
    rounds: ROUNDS,
    latency: { p50Ms: round(percentile(latencies, 50), 1), p99Ms: webhookP99Ms },
    burst: BURST,
    webhookEventsPerSecond,
  });
}

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

httpAgent.destroy();
child.disconnect();

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
  idleMs,
  messageWaitP99Ms,
  idleWaitMs,
  webhookP99Ms,
  webhookEventsPerSecond,
  honchoPollIdleMs: round(mean(honcho), 1),
  honchoSdkPollIdleMs: round(mean(honchoSdk), 1),
  poll200IdleMs: round(mean(poll200), 1),
  kbPerSubscription: round(kbPerSubscription, 1),
  kbPerRawSocket: round(kbPerRawSocket, 1),
  memoryRatio: round(kbPerSubscription / kbPerRawSocket, 2),
  rssKbPerSubscription: round(rssKbPerSubscription, 1),
  rssKbPerRawSocket: round(rssKbPerRawSocket, 1),
  finalExact,
  crossInstanceP99Ms: cross?.crossInstanceP99Ms ?? null,
  singleInstanceP99Ms: cross?.singleInstanceP99Ms ?? null,
});
