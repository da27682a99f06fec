/**
 * The change feed on PostgreSQL's LISTEN/NOTIFY: no other component.
 *
 * ## Protocol
 * A message is sent as `pg_notify(channel, payload)`, the payload compact JSON
 * `{"o":origin,"u":[[unitId,version],...],"e":enqueued}`. A NOTIFY payload holds at most 8,000
 * bytes, so a message about many units is sent as several notifications (each a valid message).
 *
 * ## Listening connection (state machine)
 * `connecting` -> `listening` (LISTEN succeeded) -> `down` (the connection ended or failed) ->
 * `connecting` again after a backoff (100 ms doubling to 5 s) -> `listening`, and then `resync` is
 * emitted, because notifications sent while it was down are lost. `closed` ends it. `connected` is
 * true only while `listening`.
 */
import pg from 'pg';
import { TypedEmitter } from '../util/typed-emitter.ts';
import type { ChangeFeed, ChangeFeedEvents, FeedMessage } from './change-feed.ts';

export interface PostgresFeedOptions {
  readonly connectionString: string;
  /** Notification channel; processes on one store use the same. @default deriver_changes */
  readonly channel?: string;
  /** Called when the listening connection fails (it reconnects by itself). */
  readonly onError?: (error: unknown) => void;
}

/** Bytes a NOTIFY payload may hold, less a margin. */
const MAX_PAYLOAD = 7_900;

type State = 'connecting' | 'listening' | 'down' | 'closed';

/** Splits a message into payloads that each fit a notification. */
export function encodeMessage(message: FeedMessage): string[] {
  const payloads: string[] = [];
  const head = `{"o":${JSON.stringify(message.origin)},"e":`;
  let units: string[] = [];
  let size = 0;
  let enqueued = message.enqueued;
  const flush = () => {
    payloads.push(`${head}${enqueued},"u":[${units.join(',')}]}`);
    enqueued = 0; // counted once
    units = [];
    size = 0;
  };
  for (const unit of message.units) {
    const entry = `[${unit.id},${unit.version}]`;
    if (size + entry.length + head.length + 40 > MAX_PAYLOAD && units.length > 0) flush();
    units.push(entry);
    size += entry.length + 1;
  }
  if (units.length > 0 || payloads.length === 0) flush();
  return payloads;
}

export function decodeMessage(payload: string): FeedMessage | null {
  try {
    const raw = JSON.parse(payload) as { o?: unknown; e?: unknown; u?: unknown };
    if (typeof raw.o !== 'string' || typeof raw.e !== 'number' || !Array.isArray(raw.u)) return null;
    const units = (raw.u as unknown[])
      .filter(
        (u): u is [number, number] =>
          Array.isArray(u) && typeof u[0] === 'number' && typeof u[1] === 'number',
      )
      .map(([id, version]) => ({ id, version }));
    return { origin: raw.o, enqueued: raw.e, units };
  } catch {
    return null;
  }
}

export async function createPostgresFeed(options: PostgresFeedOptions): Promise<ChangeFeed> {
  const channel = options.channel ?? 'deriver_changes';
  const events = new TypedEmitter<ChangeFeedEvents>();
  const publisher = new pg.Pool({ connectionString: options.connectionString, max: 2 });
  publisher.on('error', () => {});
  let state: State = 'connecting';
  let client: pg.Client | undefined;
  let backoff = 100;
  let everListened = false;
  let retryTimer: NodeJS.Timeout | undefined;

  const scheduleReconnect = (): void => {
    if (state === 'closed' || retryTimer) return;
    state = 'down';
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      void listen();
    }, backoff);
    retryTimer.unref();
    backoff = Math.min(5_000, backoff * 2);
  };

  async function listen(): Promise<void> {
    if (state === 'closed') return;
    state = 'connecting';
    const next = new pg.Client({ connectionString: options.connectionString });
    const lost = (error?: unknown) => {
      if (client !== next) return;
      client = undefined;
      if (error) options.onError?.(error);
      next.removeAllListeners('notification');
      void next.end().catch(() => {});
      scheduleReconnect();
    };
    next.on('error', lost);
    next.on('end', () => lost());
    next.on('notification', (notification) => {
      if (notification.channel !== channel || !notification.payload) return;
      const message = decodeMessage(notification.payload);
      if (message) events.emit('message', message);
    });
    client = next;
    try {
      await next.connect();
      await next.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
    } catch (error) {
      lost(error);
      return;
    }
    if (client !== next || (state as State) === 'closed') return;
    state = 'listening';
    backoff = 100;
    if (everListened) events.emit('resync', undefined);
    everListened = true;
  }

  await listen();
  if ((state as State) !== 'listening') {
    await publisher.end().catch(() => {});
    throw new Error(
      `the change feed could not listen on PostgreSQL (${options.connectionString.replace(/:[^:@/]*@/, ':***@')})`,
    );
  }

  return {
    events,
    get connected() {
      return state === 'listening';
    },
    async publish(message) {
      for (const payload of encodeMessage(message)) {
        await publisher.query('SELECT pg_notify($1, $2)', [channel, payload]);
      }
    },
    async close() {
      state = 'closed';
      clearTimeout(retryTimer);
      events.removeAllListeners();
      const current = client;
      client = undefined;
      await current?.end().catch(() => {});
      await publisher.end().catch(() => {});
    },
  };
}
