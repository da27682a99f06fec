/**
 * Capturing the counter changes of each SQLite transaction, whatever statement made them.
 *
 * Temporary triggers on `work_units` (this connection's only: `CREATE TEMP`) add every insert's
 * counters and every update's counter difference (NEW - OLD) into a temporary table, one row per
 * unit. A transaction's changes are read and cleared just before it commits (`take`), so they are
 * exactly what commits: a savepoint rolled back (one call of a group commit) takes its rows with
 * it, and a transaction rolled back leaves none.
 */
import type Database from 'better-sqlite3';
import type { UnitDelta } from '../../domain/counters.ts';
import { type KeyColumns, keyOf } from '../rows.ts';

const COUNTERS = ['pending', 'running', 'completed', 'failed', 'retrying'] as const;

const upsert = (values: string) => `INSERT INTO unit_changes VALUES (NEW.id, ${values})
    ON CONFLICT (unit_id) DO UPDATE SET ${COUNTERS.map((c) => `${c} = ${c} + excluded.${c}`).join(', ')};`;

const SETUP = `
  CREATE TEMP TABLE unit_changes (
    unit_id INTEGER PRIMARY KEY, ${COUNTERS.map((c) => `${c} INTEGER NOT NULL`).join(', ')}
  );
  CREATE TEMP TRIGGER unit_changes_on_insert AFTER INSERT ON main.work_units BEGIN
    ${upsert(COUNTERS.map((c) => `NEW.${c}`).join(', '))}
  END;
  CREATE TEMP TRIGGER unit_changes_on_update AFTER UPDATE OF ${COUNTERS.join(', ')} ON main.work_units BEGIN
    ${upsert(COUNTERS.map((c) => `NEW.${c} - OLD.${c}`).join(', '))}
  END;`;

type ChangeRow = KeyColumns & { unit_id: number } & Record<(typeof COUNTERS)[number], number>;

/** Installs the triggers on `db`; `take()` returns and clears the open transaction's changes. */
export function captureUnitChanges(db: Database.Database): { take(): UnitDelta[] } {
  db.exec(SETUP);
  const read = db.prepare<[], ChangeRow>(
    `SELECT c.*, u.task_type, u.workspace_id, u.session_id, u.observer_id, u.sender_id
     FROM temp.unit_changes c JOIN main.work_units u ON u.id = c.unit_id
     WHERE ${COUNTERS.map((c) => `c.${c} <> 0`).join(' OR ')}`,
  );
  const clear = db.prepare('DELETE FROM temp.unit_changes');
  return {
    take() {
      const rows = read.all();
      clear.run();
      return rows.map((row) => ({
        unitId: row.unit_id,
        key: keyOf(row),
        delta: {
          pending: row.pending,
          running: row.running,
          completed: row.completed,
          failed: row.failed,
          retrying: row.retrying,
        },
      }));
    },
  };
}
