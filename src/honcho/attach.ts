/**
 * `deriver-live honcho attach` and `detach` (docs/honcho-attach.md): install what change capture
 * needs beside a running Honcho's tables (the schema `deriver_live_honcho` and five triggers on
 * `queue` and `active_queue_sessions`), or remove all of it (`detach.sql`). Honcho's code, schema
 * and behaviour are otherwise untouched.
 *
 * ## Attach, in three steps (`attach_state.phase`), none holding Honcho's writes for long
 * 1. `attach.sql`, one short transaction: the schema and the triggers. From its commit on, every
 *    write to the queue is counted by the triggers (phase `capturing`).
 * 2. `backfill.sql`, one REPEATABLE READ transaction: from one snapshot, what the queue holds less
 *    what the triggers had counted in it, which is what they never saw, into `backfill` (phase
 *    `applying`). It locks nothing: Honcho's writes go on.
 * 3. `backfill` added into the counters in chunks of `CHUNK` units, each chunk its own transaction
 *    that removes what it adds (so a step cut short resumes where it stopped); then, under a brief
 *    lock of `active_queue_sessions`, the units' `held` set again (a unit held while its row was
 *    being added may have missed it), and phase `ready`: instances serve it from then on.
 * Each step of 3 waits at most `LOCK_TIMEOUT` for a lock and tries again rather than make Honcho's
 * transactions wait on it (or be the one PostgreSQL aborts in a deadlock). Attach run again after
 * an interruption resumes at its phase; attaches are one at a time (an advisory lock), and detach
 * is refused while one runs.
 */
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { packageFile } from '../util/package-files.ts';
import { attachPhase, hasWorkspaceTotals } from './honcho-source.ts';

const sql = (name: string) => readFileSync(packageFile(`honcho/${name}`), 'utf8');

/**
 * What `attach` did: installed now (or finished an interrupted one), or found it done (by an
 * earlier build without the workspace totals: served all the same, from its units' sums).
 */
export type AttachOutcome = 'attached' | 'already-attached' | 'already-attached-without-totals';

export interface AttachOptions {
  /** Told each step as it ends, in a sentence (the command prints them: a big queue takes a while). */
  readonly onStep?: (sentence: string) => void;
  /** Runs once step 1 has committed (the triggers count), before step 2 takes its snapshot. */
  readonly afterInstall?: () => Promise<void>;
  /**
   * Runs inside step 2's transaction once its snapshot is taken, before it reads the queue. (Tests
   * write to Honcho's tables in both, to show that those writes do not wait and count once.)
   */
  readonly whileCounting?: () => Promise<void>;
}

/** Units added per transaction in step 3. */
const CHUNK = 2_000;
const LOCK_TIMEOUT = '100ms';
/** Key of the advisory lock one attach holds (any number unique to this use). */
const ATTACH_LOCK = 727_245_902;

async function withClient<T>(url: string, run: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end().catch(() => {});
  }
}

export async function attachHoncho(url: string, options: AttachOptions = {}): Promise<AttachOutcome> {
  return withClient(url, async (client) => {
    const found = await client.query<{ queue: boolean; held: boolean }>(
      `SELECT to_regclass('public.queue') IS NOT NULL AS queue,
        to_regclass('public.active_queue_sessions') IS NOT NULL AS held`,
    );
    const row = found.rows[0];
    if (!row?.queue || !row.held) {
      throw new Error(
        "this database has no Honcho queue (tables public.queue and public.active_queue_sessions): point --database-url at Honcho's PostgreSQL",
      );
    }
    await client.query('SELECT pg_advisory_lock($1)', [ATTACH_LOCK]);
    try {
      let phase = await attachPhase(client);
      if (phase === 'ready')
        return (await hasWorkspaceTotals(client)) ? 'already-attached' : 'already-attached-without-totals';
      const told = options.onStep ?? (() => {});
      if (phase === null) {
        await inTransaction(client, 'BEGIN', () => client.query(sql('attach.sql')));
        phase = 'capturing';
        told("1/3: change capture installed: Honcho's writes are counted from now on");
      } else told(`resumed where it stopped (${phase})`);
      if (phase === 'capturing') {
        await options.afterInstall?.();
        await inTransaction(client, 'BEGIN ISOLATION LEVEL REPEATABLE READ', async () => {
          await client.query('SELECT pg_current_snapshot()'); // the snapshot every statement reads
          await options.whileCounting?.();
          await client.query(sql('backfill.sql'));
        });
        told('2/3: counted what the queue held before, from one snapshot');
      }
      await applyBackfill(client, told);
      return 'attached';
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [ATTACH_LOCK]).catch(() => {});
    }
  });
}

/** Step 3: `backfill` into the counters, chunk by chunk, then `held` again and phase `ready`. */
async function applyBackfill(client: pg.Client, told: (sentence: string) => void): Promise<void> {
  const { rows } = await client.query<{ n: number }>(
    'SELECT count(*)::integer AS n FROM deriver_live_honcho.backfill',
  );
  const total = rows[0]?.n ?? 0;
  await client.query(`SET lock_timeout = '${LOCK_TIMEOUT}'`);
  try {
    let added = 0;
    let toldAt = 0;
    for (;;) {
      const chunk = (await patiently(() => client.query(APPLY_CHUNK, [CHUNK]))).rowCount ?? 0;
      if (chunk === 0) break;
      added += chunk;
      if (added - toldAt >= total / 10 && added < total) {
        told(`3/3: added ${added.toLocaleString('en-US')} of ${total.toLocaleString('en-US')} counter rows`);
        toldAt = added;
      }
    }
    await patiently(() =>
      inTransaction(client, 'BEGIN', async () => {
        await client.query('LOCK TABLE public.active_queue_sessions IN SHARE MODE');
        await client.query(HELD_AGAIN);
        await client.query(`UPDATE deriver_live_honcho.attach_state SET phase = 'ready'`);
      }),
    );
    told(`3/3: added ${total.toLocaleString('en-US')} counter rows: the counts are exact`);
  } finally {
    await client.query('RESET lock_timeout').catch(() => {}); // a lost connection: its error is thrown
  }
  // The chunks left dead rows behind (in `backfill`, and each counter row they added to): cleared
  // now, and the pages marked all-visible for the index-only sums, rather than by autovacuum later
  // while instances serve.
  await client.query('VACUUM (ANALYZE) deriver_live_honcho.work_units, deriver_live_honcho.backfill');
}

/** One chunk of `backfill`, removed and added into `work_units` in one statement. */
const APPLY_CHUNK = `
WITH chunk AS (
  DELETE FROM deriver_live_honcho.backfill WHERE unit_key IN (
    SELECT unit_key FROM deriver_live_honcho.backfill ORDER BY unit_key LIMIT $1)
  RETURNING *
)
INSERT INTO deriver_live_honcho.work_units AS u (unit_key, work_unit_key, task_type, workspace_id,
  session_id, observer_id, sender_id, per_observer, held, unprocessed, completed, failed)
SELECT c.unit_key, c.work_unit_key, c.task_type, c.workspace_id, c.session_id, c.observer_id, c.sender_id,
  c.per_observer, EXISTS (SELECT 1 FROM public.active_queue_sessions a WHERE a.work_unit_key = c.work_unit_key),
  c.d_unprocessed, c.d_completed, c.d_failed
FROM chunk c ORDER BY c.unit_key
ON CONFLICT (unit_key) DO UPDATE SET
  unprocessed = u.unprocessed + excluded.unprocessed,
  completed = u.completed + excluded.completed,
  failed = u.failed + excluded.failed`;

/** Whether Honcho holds each unit, read again with holds and releases locked out. */
const HELD_AGAIN = `
UPDATE deriver_live_honcho.work_units u SET held = NOT u.held
WHERE u.held <> (u.work_unit_key IN
  (SELECT work_unit_key FROM public.active_queue_sessions WHERE work_unit_key IS NOT NULL))`;

/** Runs `run` again when it gave way on a lock (`lock_timeout`) or lost a deadlock. */
async function patiently<T>(run: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (error) {
      const code = (error as { code?: string }).code;
      if ((code !== '55P03' && code !== '40P01') || attempt >= 200) throw error;
      await sleep(Math.min(500, 5 * attempt));
    }
  }
}

export class AttachRunningError extends Error {
  constructor() {
    super('an attach is running on this database: let it finish (or stop it), then run detach again');
  }
}

/** Removes everything attach installed; refused while an attach runs (it holds `ATTACH_LOCK`). */
export async function detachHoncho(url: string): Promise<void> {
  await withClient(url, async (client) => {
    const { rows } = await client.query<{ free: boolean }>('SELECT pg_try_advisory_lock($1) AS free', [
      ATTACH_LOCK,
    ]);
    if (!rows[0]?.free) throw new AttachRunningError();
    try {
      await inTransaction(client, 'BEGIN', () => client.query(sql('detach.sql')));
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [ATTACH_LOCK]).catch(() => {});
    }
  });
}

/** Runs `run` in a transaction begun with `begin`: all of it, or nothing. */
async function inTransaction(client: pg.Client, begin: string, run: () => Promise<unknown>): Promise<void> {
  await client.query(begin);
  try {
    await run();
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}
