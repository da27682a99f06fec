/**
 * `Store.sumCounters` on PostgreSQL, for Deriver Live's own store and an attached Honcho's counters
 * alike (`src/honcho/`): one statement, one snapshot, the sums and the snapshot they were read at.
 */
import type { Counters, CountersSnapshot } from '../../domain/counters.ts';
import { type CounterSource, counterQuery } from '../counter-sql.ts';
import { countersOf, sumOf } from '../rows.ts';
import type { CounterFilter } from '../store.ts';
import { pgSnapshot } from './snapshot.ts';

type Row = Counters & { snapshot: string; session_id?: string | null };

export async function sumCountersPg(
  query: (text: string, values: readonly string[]) => Promise<readonly Row[]>,
  filter: CounterFilter,
  sessions: boolean,
  source?: CounterSource,
): Promise<CountersSnapshot> {
  const sums = counterQuery(filter, (n) => `$${n}`, source);
  const rows = await query(
    `WITH seen AS (SELECT pg_current_snapshot()::text AS snapshot)
     SELECT seen.snapshot, sums.* FROM seen LEFT JOIN (${sessions ? sums.bySession : sums.total}) sums ON true`,
    sums.values,
  );
  const snapshot = pgSnapshot(rows[0]?.snapshot ?? '');
  if (!sessions) return { snapshot, total: countersOf(rows[0] ?? {}), sessions: null };
  // Units without a session (an attached Honcho's dreams) count in the total and in no session.
  const groups = rows.filter((row) => row.session_id != null);
  return {
    snapshot,
    total: sumOf(rows),
    sessions: groups.map((row) => [row.session_id as string, countersOf(row)] as const),
  };
}
