/**
 * The status of a running Honcho, as Deriver Live serves it when `HONCHO_DATABASE_URL` names
 * Honcho's PostgreSQL (docs/honcho-attach.md): the counters `attach.sql` keeps beside Honcho's
 * queue, summed per filter (`sumCounters`, one indexed statement and the snapshot it read at), and
 * the change feed those counters send from inside Honcho's own transactions. The status engine,
 * live subscriptions and the API use them as they use Deriver Live's own store.
 *
 * Nothing is read at start-up: a filter's sums are read when first asked (then kept from the feed);
 * a whole workspace's from its totals, which this source keeps folded (the change rows Honcho's
 * statements add go into them once a second while Honcho writes, one instance at a time).
 * The `pg` driver is loaded only here.
 */
import pg from 'pg';
import type { CountersSnapshot } from '../domain/counters.ts';
import { queueEmpty, sessionIdle, type WebhookEvent } from '../domain/webhook-events.ts';
import type { TaskType } from '../domain/work-unit-key.ts';
import { NotFoundError } from '../errors.ts';
import type { ChangeFeed } from '../feed/change-feed.ts';
import { createPostgresFeed } from '../feed/postgres-feed.ts';
import type { StatusQuery } from '../status/status-filter.ts';
import type { CounterSource } from '../store/counter-sql.ts';
import { sumCountersPg } from '../store/postgres/sum-counters.ts';
import type { CounterFilter } from '../store/store.ts';
import { coalescedRuns } from '../util/coalesced-runs.ts';

/** The schema `attach` installs; its change channel is the one Deriver Live's feed listens on. */
export const HONCHO_SCHEMA = 'deriver_live_honcho';

const UNITS: CounterSource = {
  table: `${HONCHO_SCHEMA}.work_units`,
  withoutObserver: 'per_observer = false',
};

/** The same, a whole workspace read from its totals and the changes not folded into them yet. */
const WITH_TOTALS: CounterSource = {
  ...UNITS,
  workspaceTotal: (workspace) =>
    `SELECT coalesce(sum(pending), 0) AS pending, coalesce(sum(running), 0) AS running,
       coalesce(sum(completed), 0) AS completed, coalesce(sum(failed), 0) AS failed, 0 AS retrying
     FROM (SELECT pending, running, completed, failed FROM ${HONCHO_SCHEMA}.workspace_totals
           WHERE workspace_id = ${workspace}
           UNION ALL
           SELECT pending, running, completed, failed FROM ${HONCHO_SCHEMA}.workspace_changes
           WHERE workspace_id = ${workspace}) sums`,
};

/** Change rows folded into the totals per transaction. */
const FOLD_BATCH = 10_000;
/** How often the change rows are folded into the totals, while Honcho writes. */
const FOLD_EVERY_MS = 1_000;

export interface HonchoSource {
  /** Summed counters per filter, as `Store.sumCounters`. */
  sumCounters(filter: CounterFilter, options: { readonly sessions: boolean }): Promise<CountersSnapshot>;
  /** The changes Honcho's commits send. */
  readonly feed: ChangeFeed;
  /**
   * Whether a whole workspace is read from its totals (false: attached by an earlier build, and
   * summed over its units, which grows with Honcho's queue; detach and attach again for the totals).
   */
  readonly workspaceTotals: boolean;
  /** `NotFoundError` naming the argument for a session (by name) or peer Honcho does not have. */
  assertFilterNamesKnown(filter: StatusQuery): Promise<void>;
  /**
   * Takes up to `max` of the webhook events Honcho's commits wrote (`attach.sql`), oldest first,
   * hands them to `deliver` and deletes them once it resolved, in one transaction (a failure keeps
   * them for the next take; several instances take different ones). Resolves with how many.
   */
  takeEvents(max: number, deliver: (events: readonly WebhookEvent[]) => Promise<void>): Promise<number>;
  /** Honcho's workspaces that have queue rows of the user-facing types, by name. */
  listWorkspaces(limit: number): Promise<string[]>;
  /** Proves Honcho's database answers (readiness). */
  probe(): Promise<void>;
  close(): Promise<void>;
}

interface EventRow {
  id: string;
  type: 'queue.empty' | 'session.idle';
  workspace_id: string;
  session_id: string | null;
  task_type: string | null;
  sender_id: string | null;
  created_at: Date;
}

/** An event row as Deriver Live's webhook event (Honcho's `queue.empty` body for a unit). */
const webhookEventOf = (row: EventRow): WebhookEvent =>
  row.type === 'session.idle'
    ? sessionIdle(row.workspace_id, row.session_id ?? '', row.created_at.getTime())
    : queueEmpty(
        {
          taskType: row.task_type as TaskType,
          workspaceId: row.workspace_id,
          sessionId: row.session_id ?? '',
          observerId: null,
          senderId: row.sender_id,
        },
        row.created_at.getTime(),
      );

/** Where `attach` is on a database (`attach.ts`): only a `ready` one is served. */
export type AttachPhase = 'capturing' | 'applying' | 'ready';

/**
 * The attach's phase on this database, `null` when nothing is installed. A schema without
 * `attach_state` was attached by an earlier build, in one transaction: it is ready.
 */
export async function attachPhase(client: pg.ClientBase | pg.Pool): Promise<AttachPhase | null> {
  const found = await client.query<{ schema: boolean; state: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS schema,
       to_regclass($2) IS NOT NULL AS state`,
    [HONCHO_SCHEMA, `${HONCHO_SCHEMA}.attach_state`],
  );
  if (!found.rows[0]?.schema) return null;
  if (!found.rows[0].state) return 'ready';
  const { rows } = await client.query<{ phase: AttachPhase }>(
    `SELECT phase FROM ${HONCHO_SCHEMA}.attach_state`,
  );
  return rows[0]?.phase ?? 'capturing';
}

/** Whether the attach keeps each workspace's totals (an earlier build's does not). */
export async function hasWorkspaceTotals(client: pg.ClientBase | pg.Pool): Promise<boolean> {
  const { rows } = await client.query<{ totals: boolean }>(
    `SELECT to_regclass('${HONCHO_SCHEMA}.workspace_totals') IS NOT NULL AS totals`,
  );
  return rows[0]?.totals === true;
}

export class NotAttachedError extends Error {
  constructor(url: string, phase: AttachPhase | null = null) {
    const where = url.replace(/:[^:@/]*@/, ':***@');
    super(
      phase === null
        ? `the Honcho database at ${where} is not attached: run \`deriver-live honcho attach --database-url <its URL>\` once first`
        : `the attach of the Honcho database at ${where} has not finished (it is running, or was interrupted): run \`deriver-live honcho attach --database-url <its URL>\` to finish it`,
    );
  }
}

/** Folds the totals' change rows while changes are heard; resolves its stop once a fold in flight ends. */
function startFolding(
  pool: pg.Pool,
  feed: ChangeFeed,
  onError: ((error: unknown) => void) | undefined,
): () => Promise<void> {
  const folds = coalescedRuns(
    async () => {
      for (;;) {
        const { rows } = await pool.query<{ folded: number }>(
          `SELECT ${HONCHO_SCHEMA}.fold_workspace_changes($1) AS folded`,
          [FOLD_BATCH],
        );
        if ((rows[0]?.folded ?? 0) < FOLD_BATCH) return;
      }
    },
    (error) => onError?.(error),
  );
  let heard = false;
  const stopHearing = feed.events.on('changes', () => {
    heard = true;
  });
  const timer = setInterval(() => {
    if (!heard) return;
    heard = false;
    folds.request();
  }, FOLD_EVERY_MS);
  timer.unref();
  folds.request();
  return async () => {
    stopHearing();
    clearInterval(timer);
    await folds.stop();
  };
}

export interface HonchoSourceOptions {
  /** The change feed's connection was lost (it reconnects and resyncs). */
  readonly onFeedError?: (error: unknown) => void;
  /** A fold of change rows into the totals failed (the next change heard tries again). */
  readonly onFoldError?: (error: unknown) => void;
}

export async function openHonchoSource(
  connectionString: string,
  { onFeedError, onFoldError }: HonchoSourceOptions = {},
): Promise<HonchoSource> {
  const pool = new pg.Pool({ connectionString, max: 4 });
  pool.on('error', () => {}); // a dropped idle connection; the next query opens another
  try {
    const phase = await attachPhase(pool);
    if (phase !== 'ready') throw new NotAttachedError(connectionString, phase);
  } catch (error) {
    await pool.end().catch(() => {});
    throw error;
  }
  const feed = await createPostgresFeed({
    connectionString,
    channel: `deriver_changes_${HONCHO_SCHEMA}`,
    onError: onFeedError,
  }).catch(async (error: unknown) => {
    await pool.end().catch(() => {});
    throw error;
  });

  // An attach by an earlier build has no totals: its workspaces are summed from their units.
  const workspaceTotals = await hasWorkspaceTotals(pool);
  const source = workspaceTotals ? WITH_TOTALS : UNITS;
  // Folds the change rows Honcho's commits add into the totals (an attach with totals only): at
  // open, then every `FOLD_EVERY_MS` once a change was heard (apart from the pushes: a fold is a
  // write of its own), so a workspace's status reads its totals row and the few change rows of the
  // last moment.
  const stopFolding = workspaceTotals ? startFolding(pool, feed, onFoldError) : async () => {};

  const exists = async (table: 'sessions' | 'peers', workspace: string, name: string) =>
    (
      await pool.query(`SELECT 1 FROM public.${table} WHERE workspace_name = $1 AND name = $2 LIMIT 1`, [
        workspace,
        name,
      ])
    ).rowCount !== 0;

  return {
    feed,
    workspaceTotals,
    sumCounters: (filter, { sessions }) =>
      sumCountersPg(
        async (text, values) => (await pool.query(text, [...values])).rows,
        filter,
        sessions,
        source,
      ),
    async assertFilterNamesKnown({ workspaceId, sessionId, observerId, senderId }) {
      if (sessionId !== undefined && !(await exists('sessions', workspaceId, sessionId)))
        throw new NotFoundError('session', sessionId, 'sessionId');
      for (const [argument, peerId] of [
        ['observerId', observerId],
        ['senderId', senderId],
      ] as const) {
        if (peerId !== undefined && !(await exists('peers', workspaceId, peerId)))
          throw new NotFoundError('peer', peerId, argument);
      }
    },
    async takeEvents(max, deliver) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const { rows } = await client.query<EventRow>(
          `SELECT id, type, workspace_id, session_id, task_type, sender_id, created_at
           FROM ${HONCHO_SCHEMA}.events ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`,
          [max],
        );
        if (rows.length > 0) {
          await deliver(rows.map(webhookEventOf));
          await client.query(`DELETE FROM ${HONCHO_SCHEMA}.events WHERE id = ANY($1::bigint[])`, [
            rows.map((row) => row.id),
          ]);
        }
        await client.query('COMMIT');
        return rows.length;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {});
        throw error;
      } finally {
        client.release();
      }
    },
    async listWorkspaces(limit) {
      const { rows } = await pool.query<{ workspace_id: string }>(
        `SELECT DISTINCT workspace_id FROM ${UNITS.table} ORDER BY workspace_id LIMIT $1`,
        [limit],
      );
      return rows.map((row) => row.workspace_id);
    },
    async probe() {
      await pool.query('SELECT 1');
    },
    async close() {
      await stopFolding();
      await feed.close();
      await pool.end();
    },
  };
}
