/**
 * The PostgreSQL connection: a `pg` pool whose connections use the store's schema, numeric
 * `bigint`s, transactions that are retried on a deadlock or serialization failure, the database
 * clock, and numbered migrations applied once under an advisory lock (so processes starting
 * together apply each exactly once).
 */
import pg from 'pg';
import { StoreUnavailableError } from '../../errors.ts';
import { packageFile } from '../../util/package-files.ts';
import { loadMigrations, type Migration, pendingMigrations } from '../migrations.ts';

const MIGRATIONS_DIR = packageFile('store/postgres/migrations/');
/** Key of the advisory lock held while migrating (any number unique to this use). */
const MIGRATION_LOCK = 727_245_901;
const RETRYABLE = new Set(['40001', '40P01']);
/** Longest pause inside a transaction (our transactions wait on nothing but the database). */
const IDLE_IN_TRANSACTION_MS = 10_000;
/** Errors that mean the database cannot be reached or used now (connection loss, shutdown, disk). */
const UNAVAILABLE = /^(08|53|57P0)/;

/** What store operations run statements on: one connection, inside its transaction. */
export interface Db {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    values?: unknown[],
  ): Promise<pg.QueryResult<R>>;
}

/** Statement names: each parameterized statement is parsed and planned once per connection. */
const statementNames = new Map<string, string>();
function statementName(text: string): string {
  let name = statementNames.get(text);
  if (name === undefined) {
    name = `deriver_${statementNames.size}`;
    statementNames.set(text, name);
  }
  return name;
}

/** A connection whose parameterized statements are prepared (named) ones. */
const preparing = (client: pg.PoolClient): Db => ({
  query: (text, values) =>
    values === undefined ? client.query(text) : client.query({ name: statementName(text), text, values }),
});

/**
 * Statements without parameters sent with `BEGIN` and the clock, in the same round trip (a simple
 * multi-statement query); `now` is the transaction's clock as an SQL expression (the database's
 * clock read again: never earlier than the `now` the function gets). Their rows come to the
 * transaction's function in order.
 */
export type Opening = (now: string) => readonly string[];

export interface Connection {
  readonly pool: pg.Pool;
  /**
   * Runs `fn` in a transaction (retried on deadlock or serialization failure); maps faults.
   * `opening`'s statements run first, in the round trip that begins it.
   */
  transaction<T>(
    fn: (db: Db, now: number, opened: readonly pg.QueryResultRow[][]) => Promise<T>,
    opening?: Opening,
  ): Promise<T>;
  /** Runs one statement outside a transaction. */
  query<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<R[]>;
  close(): Promise<void>;
}

export interface ConnectionOptions {
  readonly connectionString: string;
  /** Schema holding the tables; created when missing. @default public */
  readonly schema?: string;
  /** Epoch ms; @default the database's clock */
  readonly clock?: () => number;
  /** Connections in the pool. @default 10 */
  readonly poolSize?: number;
}

const NOW_EXPRESSION = '(extract(epoch FROM clock_timestamp()) * 1000)::bigint';
const NOW_SQL = `SELECT ${NOW_EXPRESSION} AS now`;

/** `StoreUnavailableError` for errors that mean "the database cannot be used now"; else as is. */
export function mapFault(error: unknown): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return error;
  if (UNAVAILABLE.test(code) || code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'ETIMEDOUT') {
    return new StoreUnavailableError(
      `cannot store: PostgreSQL is unavailable (${code}: ${(error as Error).message}); nothing was written`,
      { cause: error },
    );
  }
  return error;
}

/** bigint columns as numbers (ids and epoch milliseconds stay far below 2^53). */
export const PG_TYPES = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === pg.types.builtins.INT8
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;

export async function connect(options: ConnectionOptions): Promise<Connection> {
  const schema = options.schema ?? 'public';
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.poolSize ?? 10,
    // A process frozen inside a transaction (stopped, swapped out) must not hold its row locks for
    // ever: claims skip locked units, so its units could not even be recovered when its leases
    // expire. PostgreSQL ends such a session; the frozen process's transaction then fails.
    options: `-c search_path=${quoteIdent(schema)} -c idle_in_transaction_session_timeout=${IDLE_IN_TRANSACTION_MS}`,
    types: PG_TYPES,
  });
  // An idle connection that drops must not crash the process; the next checkout reconnects.
  pool.on('error', () => {});
  const clock = options.clock;

  const withClient = async <T>(fn: (db: Db) => Promise<T>): Promise<T> => {
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (error) {
      throw mapFault(error);
    }
    let broken = false;
    // A connection that dies while checked out reports it here too; the failing query says why.
    const onError = (): void => {
      broken = true;
    };
    client.on('error', onError);
    try {
      return await fn(preparing(client));
    } catch (error) {
      broken ||= mapFault(error) !== error;
      throw mapFault(error);
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  };

  const connection: Connection = {
    pool,
    transaction(fn, opening = () => []) {
      return withClient(async (db) => {
        for (let attempt = 1; ; attempt++) {
          // BEGIN, the database clock and the opening in one round trip (a simple multi-statement
          // query; pg answers one result for a single statement, an array for several).
          const fixed = clock?.();
          const statements = [
            'BEGIN',
            ...(fixed === undefined ? [NOW_SQL] : []),
            ...opening(fixed === undefined ? NOW_EXPRESSION : `${fixed}::bigint`),
          ];
          try {
            const begun = [await db.query(statements.join('; '))].flat() as unknown as pg.QueryResult[];
            const now = fixed ?? Number(begun[1]?.rows[0]?.now);
            const opened = begun.slice(fixed === undefined ? 2 : 1).map((r) => r.rows);
            const result = await fn(db, now, opened);
            await db.query('COMMIT');
            return result;
          } catch (error) {
            await db.query('ROLLBACK').catch(() => {});
            const code = (error as { code?: unknown }).code;
            if (typeof code === 'string' && RETRYABLE.has(code) && attempt < 10) continue;
            throw error;
          }
        }
      });
    },
    query: <R extends pg.QueryResultRow>(text: string, values?: unknown[]) =>
      withClient(async (db) => (await db.query<R>(text, values)).rows),
    close: async () => {
      if (!pool.ended && !pool.ending) await pool.end();
    },
  };

  await withClient(async (db) => {
    await db.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
    await migrate(db);
  });
  return connection;
}

/** Applies the migrations not applied yet, each in its own transaction, under an advisory lock. */
async function migrate(
  db: Db,
  migrations: readonly Migration[] = loadMigrations(MIGRATIONS_DIR),
): Promise<void> {
  await db.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
  try {
    await db.query(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)',
    );
    const applied = new Set(
      (await db.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map(
        (r) => r.version,
      ),
    );
    for (const migration of pendingMigrations(applied, migrations)) {
      await db.query('BEGIN');
      try {
        await db.query(migration.sql);
        await db.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [
          migration.version,
          migration.name,
          Date.now(),
        ]);
        await db.query('COMMIT');
      } catch (error) {
        await db.query('ROLLBACK').catch(() => {});
        throw error;
      }
    }
  } finally {
    await db.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]);
  }
}

/** The first row a statement returns, if any. */
export async function one<R>(db: Db, text: string, values: unknown[]): Promise<R | undefined> {
  return (await db.query(text, values)).rows[0] as R | undefined;
}
