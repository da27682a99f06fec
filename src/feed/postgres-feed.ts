/**
 * The change feed on PostgreSQL's LISTEN/NOTIFY: no other component.
 *
 * ## Protocol
 * The database sends the messages itself: a trigger on `work_units` (migration 004) sends each
 * statement's counter changes on the schema's channel from inside the transaction, so a message
 * is delivered if and only if its transaction commits, even when the process that made it dies
 * right after. Payload: `{"x":"<xid8>","n":<number>,"u":[[unit_id,task_type,workspace_id,
 * session_id,observer_id,sender_id,d_pending,d_running,d_completed,d_failed,d_retrying],...]}`.
 * A read barrier (`sync`) is a notification of this process's own, `{"f":"<token>"}`, sent after
 * the call: notifications arrive in commit order, so once it is heard, every change committed
 * before the call has been too. Calls in the same tick share one barrier. It is sent on the
 * listening connection itself, which hears it at its own commit: one round trip, and no other
 * backend to wake (a second connection cost a signal between backends on every warm query).
 *
 * ## Listening connection (state machine)
 * `connecting` -> `listening` (LISTEN succeeded) -> `down` (the connection ended or failed) ->
 * `connecting` again after a backoff (100 ms doubling to 5 s) -> `listening`, and then `resync` is
 * emitted, because notifications sent while it was down are lost. `closed` ends it. `connected` is
 * true only while `listening`. Leaving `listening` emits `down` with the reason, once per outage.
 *
 * ## Heartbeat
 * A connection that dies without a word (a network partition, a server that stopped answering)
 * sends no `end`: while `listening`, a query every `heartbeatMs` that takes longer than
 * `heartbeatMs` (or fails) counts as the connection lost, so an outage is known within about
 * twice that.
 *
 * ## Presence (who runs workers)
 * Opened with a `presence`, the listening connection names itself in its `application_name`:
 * `deriver-live/worker/<store>/<process>` or `deriver-live/api/...`, `<store>` a hash of the
 * channel (the schema; the count is of the current database), set after connecting so that an
 * `application_name` in the URL does not hide it. The heartbeat's query is then the count of
 * distinct worker names on the database (`pg_stat_activity`, which every role may read that far),
 * so `workers` follows processes that start, stop or die (a killed process's connection ends with
 * it) within a heartbeat, with no table and no writes. While `down`, `workers` keeps its last value.
 */
import { createHash, randomUUID } from 'node:crypto';
import pg from 'pg';
import type { UnitChanges, UnitDelta } from '../domain/counters.ts';
import type { TaskType } from '../domain/work-unit-key.ts';
import { TypedEmitter } from '../util/typed-emitter.ts';
import type { ChangeFeed, ChangeFeedEvents } from './change-feed.ts';

export interface PostgresFeedOptions {
  readonly connectionString: string;
  /** Notification channel: `deriver_changes_<schema>`, as the database's trigger sends on. */
  readonly channel: string;
  /** Called when the listening connection fails (it reconnects by itself). */
  readonly onError?: (error: unknown) => void;
  /** Interval and time limit of the listening connection's heartbeat, in ms. @default 500 */
  readonly heartbeatMs?: number;
  /** Whether this process runs a worker; given, the feed counts the processes that do (`workers`). */
  readonly presence?: { readonly worker: boolean } | undefined;
}

/** The `application_name` prefix of the listening connections of one store's processes, by role. */
export function presenceName(channel: string, role: 'worker' | 'api'): string {
  return `deriver-live/${role}/${createHash('sha256').update(channel).digest('hex').slice(0, 12)}/`;
}

const WORKERS_SQL = `SELECT count(DISTINCT application_name)::int AS n FROM pg_stat_activity
  WHERE datname = current_database() AND application_name LIKE $1`;

type State = 'connecting' | 'listening' | 'down' | 'closed';

type Entry = [
  number,
  string,
  string,
  string,
  string | null,
  string | null,
  number,
  number,
  number,
  number,
  number,
  /** An observer's share of a unit (an attached Honcho's, `src/honcho/attach.sql`); absent: false. */
  boolean?,
];

/** A notification's changes; `null` for a payload that is not one. */
export function decodeChanges(payload: string): UnitChanges | null {
  try {
    const raw = JSON.parse(payload) as { x?: unknown; u?: unknown };
    if (typeof raw.x !== 'string' || !Array.isArray(raw.u)) return null;
    const units = (raw.u as Entry[]).map(
      ([
        unitId,
        taskType,
        workspaceId,
        sessionId,
        observerId,
        senderId,
        pending,
        running,
        completed,
        failed,
        retrying,
        perObserver,
      ]): UnitDelta => ({
        unitId,
        key: {
          taskType: taskType as TaskType,
          workspaceId,
          sessionId,
          observerId,
          senderId,
          ...(perObserver ? { perObserver: true } : {}),
        },
        delta: { pending, running, completed, failed, retrying },
      }),
    );
    return { tx: raw.x, units };
  } catch {
    return null;
  }
}

type InTurn = <T>(run: (client: pg.Client) => Promise<T>) => Promise<T>;

/** Runs the queries given it on `client` one after another (pg 8 warns of one sent while another runs). */
function oneAtATime(client: pg.Client): InTurn {
  let last: Promise<unknown> = Promise.resolve();
  return (run) => {
    const next = last.then(() => run(client));
    last = next.catch(() => {});
    return next;
  };
}

export async function createPostgresFeed(options: PostgresFeedOptions): Promise<ChangeFeed> {
  const { channel } = options;
  const events = new TypedEmitter<ChangeFeedEvents>();
  const fenceOrigin = randomUUID();
  let fences = 0;
  /** Barriers sent and not heard yet, by token. */
  const waiting = new Map<string, () => void>();
  /** The barrier of this tick, not sent yet (calls in the same tick join it). */
  let gathering: Promise<void> | null = null;
  const releaseAll = (): void => {
    for (const resolve of waiting.values()) resolve();
    waiting.clear();
  };
  let state: State = 'connecting';
  let client: pg.Client | undefined;
  /** The listening connection's queries, one at a time: the heartbeat's and the barriers'. */
  let inTurn: InTurn | undefined;
  let backoff = 100;
  let everListened = false;
  let retryTimer: NodeJS.Timeout | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  const heartbeatMs = options.heartbeatMs ?? 500;
  const { presence } = options;
  const applicationName = presence
    ? `${presenceName(channel, presence.worker ? 'worker' : 'api')}${fenceOrigin.slice(0, 8)}`
    : undefined;
  const workerPattern = presence ? `${presenceName(channel, 'worker')}%` : undefined;
  let workers: number | null = null;
  /** The heartbeat's query: with a presence, it counts the worker processes too. */
  const beat = async (on: pg.Client): Promise<void> => {
    if (!workerPattern) {
      await on.query('SELECT 1');
      return;
    }
    const result = await on.query<{ n: number }>(WORKERS_SQL, [workerPattern]);
    const n = result.rows[0]?.n ?? 0;
    if (n !== workers) {
      workers = n;
      events.emit('workers', n);
    }
  };

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
      inTurn = undefined;
      clearInterval(heartbeat);
      releaseAll(); // what they wait for may be lost: the resync after reconnecting reads again
      if (error) options.onError?.(error);
      if (state === 'listening') {
        const reason = error instanceof Error ? error.message : 'the connection to PostgreSQL ended';
        events.emit('down', reason);
      }
      next.removeAllListeners('notification');
      void next.end().catch(() => {});
      scheduleReconnect();
    };
    next.on('error', lost);
    next.on('end', () => lost());
    next.on('notification', (notification) => {
      if (notification.channel !== channel || !notification.payload) return;
      if (notification.payload.startsWith('{"f":')) {
        const token = (JSON.parse(notification.payload) as { f: string }).f;
        waiting.get(token)?.();
        waiting.delete(token);
        return;
      }
      const changes = decodeChanges(notification.payload);
      if (changes) events.emit('changes', changes);
    });
    client = next;
    const turn = oneAtATime(next);
    inTurn = turn;
    try {
      await next.connect();
      if (applicationName)
        await next.query("SELECT set_config('application_name', $1, false)", [applicationName]);
      await next.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
      await beat(next);
    } catch (error) {
      lost(error);
      return;
    }
    if (client !== next || (state as State) === 'closed') return;
    state = 'listening';
    backoff = 100;
    let beating = false;
    heartbeat = setInterval(() => {
      if (beating) return;
      beating = true;
      const silent = setTimeout(
        () => lost(new Error(`PostgreSQL did not answer within ${heartbeatMs} ms`)),
        heartbeatMs,
      );
      turn(beat).then(
        () => {
          clearTimeout(silent);
          beating = false;
        },
        (error: unknown) => {
          clearTimeout(silent);
          lost(error);
        },
      );
    }, heartbeatMs);
    heartbeat.unref();
    if (everListened) events.emit('resync', undefined);
    everListened = true;
  }

  await listen();
  if ((state as State) !== 'listening') {
    throw new Error(
      `the change feed could not listen on PostgreSQL (${options.connectionString.replace(/:[^:@/]*@/, ':***@')})`,
    );
  }

  return {
    events,
    get connected() {
      return state === 'listening';
    },
    get workers() {
      return workers;
    },
    sync() {
      if (state !== 'listening') return Promise.resolve();
      gathering ??= new Promise<void>((resolve) => {
        queueMicrotask(() => {
          gathering = null;
          const on = inTurn;
          if (state !== 'listening' || !client || !on) {
            resolve(); // the connection went meanwhile: its resync reads again
            return;
          }
          const token = `${fenceOrigin}:${++fences}`;
          waiting.set(token, resolve);
          on((c) => c.query('SELECT pg_notify($1, $2)', [channel, JSON.stringify({ f: token })])).catch(
            () => {
              waiting.delete(token);
              resolve(); // not sent: the database is unreachable, and so is a fresher answer
            },
          );
        });
      });
      return gathering;
    },
    async close() {
      state = 'closed';
      clearTimeout(retryTimer);
      clearInterval(heartbeat);
      events.removeAllListeners();
      const current = client;
      client = undefined;
      inTurn = undefined;
      await current?.end().catch(() => {});
      releaseAll();
    },
  };
}
