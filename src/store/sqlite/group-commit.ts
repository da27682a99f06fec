/**
 * Group commit for acknowledged writes on SQLite. Calls that arrive in the same turn of the event
 * loop (many concurrent `addMessages` requests) are run in one durable transaction, each inside a
 * savepoint of its own, so one fsync serves them all: a call that throws (bad input, an unknown
 * session) is rolled back to its savepoint and rejected alone, the others commit. A fault of the
 * database itself (an `SQLITE_*` error: full disk, I/O) aborts the whole transaction and every call
 * of the batch is rejected with it (as `STORE_UNAVAILABLE`): nothing of it is written. Every call is
 * answered only after the commit, so what is acknowledged is durable, as with one transaction per
 * call.
 *
 * States: `idle` -> `gathering` (the first call schedules a flush for the next turn; more calls
 * join) -> `idle` (the flush commits the batch and answers each call).
 */
import Database from 'better-sqlite3';

interface Pending {
  readonly fn: () => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

export interface GroupCommit {
  /** Runs `fn` in the next group transaction; resolves once that transaction is committed. */
  run<T>(fn: () => T): Promise<T>;
}

export function createGroupCommit(options: {
  readonly db: Database.Database;
  /** Runs the batch in one durable transaction (`connection.durable`). */
  readonly durable: <T>(fn: () => T) => T;
}): GroupCommit {
  const { db, durable } = options;
  let batch: Pending[] = [];

  const flush = (): void => {
    const items = batch;
    batch = [];
    let outcomes: ({ ok: true; value: unknown } | { ok: false; error: unknown })[];
    try {
      outcomes = durable(() =>
        items.map((item) => {
          try {
            // Inside the batch's transaction, better-sqlite3 runs this one in a savepoint.
            return { ok: true as const, value: db.transaction(item.fn)() };
          } catch (error) {
            if (error instanceof Database.SqliteError) throw error; // the database's fault: all fail
            return { ok: false as const, error };
          }
        }),
      );
    } catch (error) {
      for (const item of items) item.reject(error);
      return;
    }
    outcomes.forEach((outcome, i) => {
      const item = items[i];
      if (!item) return;
      if (outcome.ok) item.resolve(outcome.value);
      else item.reject(outcome.error);
    });
  };

  return {
    run<T>(fn: () => T): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        if (batch.length === 0) setImmediate(flush);
        batch.push({ fn, resolve: resolve as (value: unknown) => void, reject });
      });
    },
  };
}
