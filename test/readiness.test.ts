/**
 * `/readyz` on PostgreSQL: unready, naming the part, while the database refuses the instance's
 * connections (its role cannot log in and its connections were cut: the store and the change feed
 * are both gone), and ready again once it can connect. `/healthz` stays alive throughout.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterEach, expect, inject, it } from 'vitest';
import { startTestServer } from './server-helpers.ts';
import { POSTGRES } from './support/stores.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

it('turns unready when the store and the feed are gone, and ready again after', async () => {
  const admin = new pg.Client({ connectionString: inject('postgresUrl') });
  await admin.connect();
  cleanups.push(() => admin.end());
  const role = `deriver_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  await admin.query(`CREATE ROLE ${role} LOGIN SUPERUSER PASSWORD 'readiness-test'`);
  cleanups.push(() => admin.query(`DROP ROLE IF EXISTS ${role}`));
  const location = await POSTGRES.fresh();
  cleanups.push(location.dispose);
  const url = new URL(location.url);
  url.username = role;
  url.password = 'readiness-test';
  const server = await startTestServer({ config: { databaseUrl: url.toString(), workerConcurrency: 1 } });
  cleanups.push(async () => {
    await admin.query(`ALTER ROLE ${role} LOGIN`);
    await server.close();
  });
  const readyz = async () => {
    const response = await fetch(server.url.replace('/graphql', '/readyz'));
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
  expect((await readyz()).status).toBe(200);

  await admin.query(`ALTER ROLE ${role} NOLOGIN`);
  await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [role]);
  await expect.poll(async () => (await readyz()).status, { timeout: 15_000 }).toBe(503);
  const down = await readyz();
  expect(JSON.stringify(down.body)).toMatch(/store|feed/);
  expect((await fetch(server.url.replace('/graphql', '/healthz'))).status).toBe(200);

  await admin.query(`ALTER ROLE ${role} LOGIN`);
  await expect.poll(async () => (await readyz()).status, { timeout: 15_000 }).toBe(200);
}, 60_000);
