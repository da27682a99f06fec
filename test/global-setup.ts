/**
 * Once per test run: the PostgreSQL server of the PostgreSQL store's tests (`TEST_DATABASE_URL`,
 * else an embedded one; see `support/postgres-server.ts`). Each store in the tests then uses a
 * schema of its own on it.
 */
import type { TestProject } from 'vitest/node';
import { startPostgres } from './support/postgres-server.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    postgresUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = await startPostgres();
  project.provide('postgresUrl', server.url);
  return () => server.stop();
}
