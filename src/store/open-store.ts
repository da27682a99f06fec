/**
 * Opens the store a `DATABASE_URL` names, loading only that store's driver:
 * - `file:PATH`: the embedded SQLite store (better-sqlite3);
 * - `postgres://...` or `postgresql://...`: the PostgreSQL store (pg). An optional `schema` query
 *   parameter (`postgres://host/db?schema=deriver`) selects the schema holding the tables.
 */
import type { BatchPolicies } from './queue-plan.ts';
import type { Store } from './store.ts';

export interface OpenStoreOptions {
  /** Milliseconds since the epoch (tests). @default the store's own clock */
  readonly clock?: () => number;
  /** Task types whose units are handed over in batches (docs/deriver.md, "Batches"). @default none */
  readonly batches?: BatchPolicies;
}

export type StoreLocation =
  | { readonly kind: 'sqlite'; readonly path: string }
  | { readonly kind: 'postgres'; readonly connectionString: string; readonly schema: string | undefined };

/** Parses a store URL; throws `RangeError` with a sentence naming what is expected. */
export function parseStoreUrl(url: string): StoreLocation {
  if (url.startsWith('file:') && url.length > 'file:'.length) return { kind: 'sqlite', path: url.slice(5) };
  if (/^postgres(ql)?:\/\//.test(url)) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new RangeError(`"${url}" is not a valid postgres:// URL`);
    }
    const schema = parsed.searchParams.get('schema') ?? undefined;
    parsed.searchParams.delete('schema');
    return { kind: 'postgres', connectionString: parsed.toString(), schema };
  }
  throw new RangeError(`must be file:PATH or postgres://... (got "${url}")`);
}

export async function openStore(url: string, options: OpenStoreOptions = {}): Promise<Store> {
  const location = parseStoreUrl(url);
  if (location.kind === 'sqlite') {
    const { createSqliteStore } = await import('./sqlite/sqlite-store.ts');
    return createSqliteStore({ path: location.path, clock: options.clock, batches: options.batches });
  }
  const { createPostgresStore } = await import('./postgres/postgres-store.ts');
  return createPostgresStore({
    connectionString: location.connectionString,
    schema: location.schema,
    clock: options.clock,
    batches: options.batches,
  });
}
