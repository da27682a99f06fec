/**
 * Subscriber pools for `npm run bench:live`: graphql-ws clients, and protocol clients that only
 * parse each frame (as the raw twin's do), each recording what it receives after its snapshot in an
 * `EventLog`; and the waits between passes.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { type Client, createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { type Counts, command, LATENCY_SUBSCRIPTION, now, url } from './live-client.ts';
// ---- subscriber pools -----------------------------------------------------------------------

/**
 * What a pool's subscribers received after their snapshots, in columns of numbers (no object per
 * event: at 10k subscribers a pass receives 450,000 events, and an object each grew the generator's
 * heap until its own collections stalled the receipts being timed), and each one's last counts.
 */
export class EventLog {
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

export async function connect(n: number): Promise<Client[]> {
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
export async function subscribeAll(clients: Client[], variables: (i: number) => Record<string, unknown>) {
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
export const closeAll = async (clients: Client[]) => {
  await Promise.all(clients.map((c) => c.dispose()));
};
/**
 * Before a measured pass: the server has handled the previous pass's closes and collected its
 * garbage, and so has this process (run with --expose-gc), so that neither pays for the previous
 * pass during this one.
 */
/** Waits until the server has `sockets` open, collects its garbage; returns its live memory (KB). */
export async function quiesce(sockets: number): Promise<number> {
  const { liveKb } = await command({ op: 'quiesce', sockets });
  (globalThis as { gc?: () => void }).gc?.();
  return Number(liveKb);
}
/**
 * Subscribers that speak graphql-transport-ws over plain `ws` sockets and do what the raw twin's
 * clients do with each frame (JSON.parse), so that their latency differs from the twin's only by
 * what the server does. Resolves once each has its snapshot; events after it go to `events`.
 */
export async function protocolSubscribers(n: number, variables: (i: number) => Record<string, unknown>) {
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

export async function settle(events: EventLog, quietMs = 300): Promise<void> {
  let last = -1;
  for (;;) {
    const n = events.size;
    if (n === last) return;
    last = n;
    await sleep(quietMs);
  }
}
