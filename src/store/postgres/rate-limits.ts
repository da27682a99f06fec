/**
 * Rate limits kept in PostgreSQL, so every process on the database shares them
 * (`../rate-limits.ts` has the rule): a call locks its type's row, decides with `admit` and writes
 * the new state in the same transaction, so two processes never both take the last slot.
 */
import type { TaskType } from '../../domain/work-unit-key.ts';
import { admit, OPEN_RATE, paused, type RateLimits, type RateState, waitsOf } from '../rate-limits.ts';
import type { Db } from './connection.ts';

interface RateRow {
  task_type: TaskType;
  requests_at: number;
  tokens_at: number;
  paused_until: number;
}

const stateOf = (row: RateRow | undefined): RateState =>
  row ? { requestsAt: row.requests_at, tokensAt: row.tokens_at, pausedUntil: row.paused_until } : OPEN_RATE;

async function lockedState(db: Db, type: TaskType): Promise<RateState> {
  await db.query('INSERT INTO rate_limits (task_type) VALUES ($1) ON CONFLICT (task_type) DO NOTHING', [
    type,
  ]);
  const found = await db.query<RateRow>('SELECT * FROM rate_limits WHERE task_type = $1 FOR UPDATE', [type]);
  return stateOf(found.rows[0]);
}

async function write(db: Db, type: TaskType, state: RateState): Promise<void> {
  await db.query(
    'UPDATE rate_limits SET requests_at = $2, tokens_at = $3, paused_until = $4 WHERE task_type = $1',
    [type, state.requestsAt, state.tokensAt, state.pausedUntil],
  );
}

export function createPostgresRateLimits(
  transaction: <T>(fn: (db: Db, now: number) => Promise<T>) => Promise<T>,
): RateLimits {
  return {
    take: (type, limit, tokens) =>
      transaction(async (db, now) => {
        const admission = admit(await lockedState(db, type), limit, tokens, now);
        if (admission.ok) await write(db, type, admission.next);
        return admission;
      }),
    pause: (type, ms) =>
      transaction(async (db, now) => {
        await write(db, type, paused(await lockedState(db, type), now + ms));
      }),
    waits: () =>
      transaction(async (db, now) => {
        const rows = await db.query<RateRow>('SELECT * FROM rate_limits');
        return waitsOf(new Map(rows.rows.map((row) => [row.task_type, stateOf(row)])), now);
      }),
  };
}
