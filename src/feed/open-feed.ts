/**
 * The change feed for a store URL: PostgreSQL's LISTEN/NOTIFY for `postgres://` (one channel per
 * schema, the one the database's trigger sends on, so processes on one store hear each other and
 * nobody else), else the SQLite store's own commits.
 * The `pg` driver is loaded only for PostgreSQL.
 */
import { parseStoreUrl } from '../store/open-store.ts';
import type { Store } from '../store/store.ts';
import type { ChangeFeed } from './change-feed.ts';
import { createInProcessFeed } from './in-process-feed.ts';

export async function openFeed(
  storeUrl: string,
  store: Pick<Store, 'events'>,
  options: {
    /** Whether this process runs a worker: the feed then counts the processes that do. */
    readonly presence?: { readonly worker: boolean };
    readonly onError?: (error: unknown) => void;
  } = {},
): Promise<ChangeFeed> {
  const { presence, onError } = options;
  const location = parseStoreUrl(storeUrl);
  if (location.kind === 'sqlite') return createInProcessFeed(store.events, presence);
  const { createPostgresFeed } = await import('./postgres-feed.ts');
  return createPostgresFeed({
    connectionString: location.connectionString,
    channel: `deriver_changes_${location.schema ?? 'public'}`.slice(0, 63),
    presence,
    onError,
  });
}
