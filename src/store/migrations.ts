/**
 * Numbered migrations, shared by both stores: `NNN-name.sql` files in a store's `migrations/`
 * folder, applied in order, each exactly once; a database whose applied migrations this code does
 * not know is refused.
 */
import { readdirSync, readFileSync } from 'node:fs';

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/** The `NNN-name.sql` files of `dir`, in order. */
export function loadMigrations(dir: URL): Migration[] {
  return readdirSync(dir)
    .filter((file) => /^\d{3}-.+\.sql$/.test(file))
    .sort()
    .map((file) => ({
      version: Number(file.slice(0, 3)),
      name: file,
      sql: readFileSync(new URL(file, dir), 'utf8'),
    }));
}

/** The database was written by a newer Deriver Live: its migrations are unknown to this code. */
export class DatabaseTooNewError extends Error {
  constructor(
    readonly databaseVersion: number,
    readonly codeVersion: number,
  ) {
    super(
      `the database is at schema version ${databaseVersion}, newer than this code knows (${codeVersion}); run the Deriver Live version that wrote it, or a newer one`,
    );
    this.name = 'DatabaseTooNewError';
  }
}

/** The migrations still to apply; throws `DatabaseTooNewError` when the database is ahead. */
export function pendingMigrations(
  applied: ReadonlySet<number>,
  migrations: readonly Migration[],
): Migration[] {
  const newest = Math.max(0, ...applied);
  const known = Math.max(0, ...migrations.map((m) => m.version));
  if (newest > known) throw new DatabaseTooNewError(newest, known);
  return migrations.filter((m) => !applied.has(m.version));
}
