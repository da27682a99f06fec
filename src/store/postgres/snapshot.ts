/**
 * A PostgreSQL read snapshot as `pg_current_snapshot()` writes it (`xmin:xmax:xip1,xip2,...`), and
 * whether it includes a transaction, as `pg_visible_in_snapshot` decides for a committed one: ids
 * below `xmin` had finished, ids from `xmax` on had not started, and those in between are included
 * unless they were in progress (listed). Transaction ids are 64-bit (xid8): compared as BigInt.
 */
import type { CommitStamp, ReadSnapshot } from '../../domain/counters.ts';

export function pgSnapshot(text: string): ReadSnapshot {
  const [xmin, xmax, xip = ''] = text.split(':');
  if (xmin === undefined || xmax === undefined || xmin === '' || xmax === '')
    throw new Error(`not a PostgreSQL snapshot: ${JSON.stringify(text)}`);
  const min = BigInt(xmin);
  const max = BigInt(xmax);
  const inProgress = new Set(xip === '' ? [] : xip.split(','));
  return {
    includes(tx: CommitStamp): boolean {
      const xid = BigInt(tx);
      if (xid < min) return true;
      if (xid >= max) return false;
      return !inProgress.has(tx);
    },
  };
}
