/**
 * The store backends every store-level suite runs against (`describe.each(STORES)`), as graphql-ws
 * runs one suite over every transport: the embedded SQLite store on a temp file, and the PostgreSQL
 * store on the run's server (see `global-setup.ts`), each test in a schema of its own.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { tempDir } from '../helpers.ts';

export interface StoreBackend {
  readonly name: 'sqlite' | 'postgres';
  /** A fresh, empty store location (a `DATABASE_URL`), removed by `dispose`. */
  fresh(): Promise<{ readonly url: string; dispose(): Promise<void> }>;
}

export const SQLITE: StoreBackend = {
  name: 'sqlite',
  async fresh() {
    const temp = tempDir();
    return { url: `file:${temp.path('deriver.db')}`, dispose: async () => temp.remove() };
  },
};

export const POSTGRES: StoreBackend = {
  name: 'postgres',
  async fresh() {
    const server = inject('postgresUrl');
    const schema = `t_${randomUUID().replace(/-/g, '')}`;
    const url = new URL(server);
    url.searchParams.set('schema', schema);
    return {
      url: url.toString(),
      async dispose() {
        const client = new pg.Client({ connectionString: server });
        await client.connect();
        await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
        await client.end();
      },
    };
  },
};

export const STORES: readonly StoreBackend[] = [SQLITE, POSTGRES];
