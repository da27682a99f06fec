/**
 * Storage faults of the embedded store, made visible instead of silent:
 * - SQLite errors that mean "cannot store now" (read-only file, full disk, I/O error, corruption,
 *   another process's lock) become `StoreUnavailableError` with a sentence a person can act on;
 * - the database file removed or replaced while the server runs is noticed before every write (an
 *   open SQLite connection would otherwise keep writing to the removed file, acknowledging writes
 *   that are gone after a restart). From then on every write is refused until a restart.
 */
import { accessSync, constants, existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { StoreUnavailableError } from '../../errors.ts';

export interface FileGuard {
  /** Runs a write; throws `StoreUnavailableError` when the file is gone or SQLite cannot store. */
  write<T>(fn: () => T): T;
}

const FAULTS: readonly [prefix: string, what: string][] = [
  ['SQLITE_READONLY', 'the database file is read-only'],
  ['SQLITE_FULL', 'the disk holding the database is full'],
  ['SQLITE_IOERR', 'an I/O error occurred on the database file'],
  ['SQLITE_CORRUPT', 'the database file is corrupt'],
  ['SQLITE_NOTADB', 'the database file is not a SQLite database'],
  ['SQLITE_CANTOPEN', 'the database file cannot be opened'],
  ['SQLITE_BUSY', 'the database is locked by another process'],
  ['SQLITE_PERM', 'the database file may not be written'],
];

/** `StoreUnavailableError` for a SQLite error that means "cannot store now"; `null` for others. */
export function storeFault(error: unknown, path: string): StoreUnavailableError | null {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return null;
  const fault = FAULTS.find(([prefix]) => code.startsWith(prefix));
  if (!fault) return null;
  return new StoreUnavailableError(`cannot store: ${fault[1]} (${path}, ${code}); nothing was written`, {
    cause: error,
  });
}

/**
 * Creates the database file's folder when missing; a folder that cannot be created is a
 * `StoreUnavailableError` naming the nearest existing folder and why (a read-only filesystem, no
 * permission), not `ENOENT ... mkdir`. Returns the first folder it created, if any.
 */
export function ensureFolder(path: string): string | undefined {
  try {
    return mkdirSync(dirname(path), { recursive: true });
  } catch (error) {
    let existing = dirname(path);
    while (!existsSync(existing) && dirname(existing) !== existing) existing = dirname(existing);
    assertWritable(join(existing, 'x')); // throws, naming the folder and the reason
    throw error;
  }
}

/**
 * Throws `StoreUnavailableError` when the database file or its folder cannot be written (a
 * read-only filesystem or file), so start-up says so instead of SQLite's "unable to open".
 */
export function assertWritable(path: string): void {
  for (const target of existsSync(path) ? [path, dirname(path)] : [dirname(path)]) {
    try {
      accessSync(target, constants.W_OK);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const why = code === 'EROFS' ? 'is on a read-only filesystem' : 'may not be written by this user';
      throw new StoreUnavailableError(
        `cannot store: ${target} ${why} (${code}); the store needs to write there`,
        {
          cause: error,
        },
      );
    }
  }
}

interface Identity {
  readonly dev: number;
  readonly ino: number;
}

function identityOf(path: string): Identity | null {
  const stats = statSync(path, { throwIfNoEntry: false });
  return stats ? { dev: stats.dev, ino: stats.ino } : null;
}

export function createFileGuard(path: string): FileGuard {
  const inMemory = path === ':memory:' || path === '';
  const original = inMemory ? null : identityOf(path);
  let lost: StoreUnavailableError | null = null;

  const checkFile = (): void => {
    if (lost) throw lost;
    if (inMemory) return;
    const now = identityOf(path);
    if (now && original && now.dev === original.dev && now.ino === original.ino) return;
    lost = new StoreUnavailableError(
      `cannot store: the database file ${path} was ${now ? 'replaced' : 'removed'} while the server was running; restart the server`,
    );
    throw lost;
  };

  return {
    write(fn) {
      checkFile();
      try {
        return fn();
      } catch (error) {
        throw storeFault(error, path) ?? error;
      }
    },
  };
}
