import type Database from 'better-sqlite3';
import { packageFile } from '../../util/package-files.ts';
import { loadMigrations, type Migration, pendingMigrations } from '../migrations.ts';

const MIGRATIONS_DIR = packageFile('store/sqlite/migrations/');

/**
 * Applies the migrations not applied yet, each exactly once; refuses a database with migrations
 * this code does not know (`DatabaseTooNewError`). Runs under SQLite's write lock
 * (`BEGIN IMMEDIATE`), so two processes opening the same file at once cannot both apply one.
 */
export function migrate(
  db: Database.Database,
  migrations: readonly Migration[] = loadMigrations(MIGRATIONS_DIR),
): number {
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
    const pending = pendingMigrations(applied, migrations);
    for (const migration of pending) {
      db.exec(migration.sql);
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(
        migration.version,
        migration.name,
        Date.now(),
      );
    }
    return pending.length;
  });
  return apply.immediate();
}
