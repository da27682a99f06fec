import { readdirSync, readFileSync } from 'node:fs';
import type Database from 'better-sqlite3';
import { DatabaseTooNewError } from '../database-too-new.ts';

const MIGRATIONS_DIR = new URL('./migrations/', import.meta.url);

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/** Numbered `NNN-name.sql` files beside this module, in order. */
export function loadMigrations(): Migration[] {
  return readdirSync(MIGRATIONS_DIR)
    .filter((file) => /^\d{3}-.+\.sql$/.test(file))
    .sort()
    .map((file) => ({
      version: Number(file.slice(0, 3)),
      name: file,
      sql: readFileSync(new URL(file, MIGRATIONS_DIR), 'utf8'),
    }));
}

/**
 * Applies the migrations not applied yet, each exactly once; refuses a database with migrations
 * this code does not know (`DatabaseTooNewError`). Runs under SQLite's write lock
 * (`BEGIN IMMEDIATE`), so two processes opening the same file at once cannot both apply one.
 */
export function migrate(db: Database.Database, migrations: readonly Migration[] = loadMigrations()): number {
  const apply = db.transaction(() => {
    db.exec(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT',
    );
    const applied = new Set(
      db
        .prepare<[], { version: number }>('SELECT version FROM schema_migrations')
        .all()
        .map((row) => row.version),
    );
    const newest = Math.max(0, ...applied);
    const known = Math.max(0, ...migrations.map((m) => m.version));
    if (newest > known) throw new DatabaseTooNewError(newest, known);
    let count = 0;
    for (const migration of migrations) {
      if (applied.has(migration.version)) continue;
      db.exec(migration.sql);
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(
        migration.version,
        migration.name,
        Date.now(),
      );
      count++;
    }
    return count;
  });
  return apply.immediate();
}
