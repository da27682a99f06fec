/**
 * The embedded store's connection: one SQLite file through better-sqlite3 in WAL mode, checked
 * (quick integrity check) and migrated at open, and its two kinds of transaction.
 *
 * Durability: writes a caller is told about (workspaces, peers, sessions, messages and their tasks)
 * commit with `synchronous = FULL`, so an acknowledged write survives a power loss. Scheduler
 * bookkeeping commits with `synchronous = NORMAL` (WAL's recommended setting): a crash of the process
 * loses nothing, a power loss may roll back the last few task transitions, which at-least-once
 * execution already covers (the task runs again).
 *
 * One process per file: the connection holds SQLite's lock for as long as it is open (`locking_mode
 * = EXCLUSIVE`), so a second process on the same file refuses to start with one clear line instead of
 * running with counts that never see the first one's commits (several processes share one
 * PostgreSQL database instead). Every write goes through the file guard (`file-guard.ts`).
 *
 * Commits are numbered: every transaction that changes counters is announced to `onCommit` right
 * after its commit, stamped with its number (`unit-changes.ts` captures what it changed), and
 * `snapshot()` names the commits a read made now sees (every number up to the last one). Reads and
 * writes run synchronously on this one connection, so a read never sees a transaction half done.
 *
 * Start-up reads no history: the integrity check at open covers the file's first pages, the
 * schema and the migrations table (a file that is not a database or whose pages are garbage is
 * refused there); the tables themselves are checked by SQLite as they are read.
 */
import Database from 'better-sqlite3';
import type { ReadSnapshot, UnitChanges } from '../../domain/counters.ts';
import { assertWritable, createFileGuard, ensureFolder } from './file-guard.ts';
import { migrate } from './migrate.ts';
import { prepareStatements, type Statements } from './statements.ts';
import { captureUnitChanges } from './unit-changes.ts';

/** Another process holds the database file. */
export class FileInUseError extends Error {
  constructor(readonly path: string) {
    super(
      `the database file ${path} is in use by another process; run one process per SQLite file, or share a PostgreSQL database (DATABASE_URL=postgres://...) between several`,
    );
    this.name = 'FileInUseError';
  }
}

export interface SqliteConnection {
  readonly db: Database.Database;
  readonly sql: Statements;
  /** Runs `fn` in an IMMEDIATE transaction, fsynced at commit (acknowledged writes). */
  durable<T>(fn: () => T): T;
  /** Runs `fn` in an IMMEDIATE transaction with WAL's NORMAL sync (scheduler bookkeeping). */
  bookkeeping<T>(fn: () => T): T;
  /** The commits a read made now sees. */
  snapshot(): ReadSnapshot;
}

/**
 * SQLite's quick integrity check of the schema and the migrations table (pages and indexes, not
 * constraints); throws when it fails. Bounded: it reads none of the tables that grow with history.
 */
function checkIntegrity(db: Database.Database, path: string): void {
  db.pragma('schema_version'); // reads the header and the schema: "not a database" fails here
  const table = db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'schema_migrations'").get();
  if (!table) return; // a new file
  const result = db.pragma('quick_check(schema_migrations)', { simple: true });
  if (result !== 'ok') {
    const detail = String(result).replace(/\s+/g, ' ').trim();
    throw new Error(
      `the database file ${path} failed SQLite's integrity check (${detail}); restore it from a backup`,
    );
  }
}

export function openSqlite(
  path: string,
  busyTimeoutMs: number,
  onCommit: (changes: UnitChanges) => void,
): SqliteConnection {
  if (path !== ':memory:') {
    ensureFolder(path);
    assertWritable(path);
  }
  const db = new Database(path);
  try {
    db.pragma(`busy_timeout = ${busyTimeoutMs}`);
    db.pragma('locking_mode = EXCLUSIVE');
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    checkIntegrity(db, path);
    migrate(db); // a write: from here on this connection holds the file
  } catch (error) {
    db.close();
    if ((error as { code?: unknown }).code === 'SQLITE_BUSY') throw new FileInUseError(path);
    throw error;
  }
  const guard = createFileGuard(path);
  const changes = captureUnitChanges(db);
  let committed = 0;
  /** Runs `fn` in a transaction and announces what it changed once it has committed. */
  const commit = <T>(fn: () => T): T => {
    let units: ReturnType<typeof changes.take> = [];
    const value = db
      .transaction(() => {
        const result = fn();
        units = changes.take();
        return result;
      })
      .immediate();
    committed++;
    if (units.length > 0) onCommit({ tx: String(committed), units });
    return value;
  };
  return {
    db,
    sql: prepareStatements(db),
    durable(fn) {
      return guard.write(() => {
        db.pragma('synchronous = FULL');
        try {
          return commit(fn);
        } finally {
          db.pragma('synchronous = NORMAL');
        }
      });
    },
    bookkeeping: (fn) => guard.write(() => commit(fn)),
    snapshot() {
      const seen = committed;
      return { includes: (tx) => Number(tx) <= seen };
    },
  };
}
