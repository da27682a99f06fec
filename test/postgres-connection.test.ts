/**
 * The PostgreSQL store when its connections fail: an operation cut off mid-transaction (its
 * backend terminated with `pg_terminate_backend`) fails with `STORE_UNAVAILABLE` and writes
 * nothing; the next operations reconnect by themselves; an unreachable server is a clear error.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterEach, expect, inject, it } from 'vitest';
import { StoreUnavailableError } from '../src/errors.ts';
import { createDeriver } from '../src/service/deriver.ts';
import { openStore } from '../src/store/open-store.ts';
import type { Store } from '../src/store/store.ts';
import { POSTGRES } from './support/stores.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function adminClient(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: inject('postgresUrl') });
  await client.connect();
  cleanups.push(() => client.end());
  return client;
}

it('fails an operation whose connection is killed with STORE_UNAVAILABLE, writes nothing, and recovers', async () => {
  const location = await POSTGRES.fresh();
  cleanups.push(location.dispose);
  const app = `deriver_test_${randomUUID().slice(0, 8)}`;
  const url = new URL(location.url);
  url.searchParams.set('application_name', app);
  const store: Store = await openStore(url.toString());
  cleanups.push(() => store.close());
  const deriver = createDeriver({ store });
  await deriver.upsertSession({ id: 's', peers: [{ peerId: 'a' }] });
  await deriver.addMessages({ sessionId: 's', messages: [{ peerId: 'a', content: 'one' }] });

  // Hold the session's row so the next addMessages waits inside its transaction, then kill it.
  const admin = await adminClient();
  const schema = url.searchParams.get('schema');
  await admin.query('BEGIN');
  await admin.query(`SELECT 1 FROM ${schema}.sessions WHERE id = 's' FOR UPDATE`);
  const cutOff = deriver.addMessages({ sessionId: 's', messages: [{ peerId: 'a', content: 'two' }] }).then(
    () => null,
    (e: unknown) => e,
  );
  await expect
    .poll(
      async () =>
        (
          await admin.query(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`,
            [app],
          )
        ).rows[0].n,
    )
    .toBe(1);
  await admin.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`,
    [app],
  );
  const error = await cutOff;
  expect(error).toBeInstanceOf(StoreUnavailableError);
  expect((error as Error).message).toMatch(/^cannot store: PostgreSQL is unavailable/);
  await admin.query('ROLLBACK');

  // The pool reconnects: the next calls work, and only the acknowledged message is stored.
  await deriver.addMessages({ sessionId: 's', messages: [{ peerId: 'a', content: 'three' }] });
  const messages = await store.listMessages('default', 's');
  expect(messages.map((m) => [m.seq, m.content])).toEqual([
    [1, 'one'],
    [2, 'three'],
  ]);
  expect((await store.listTasks()).length).toBe(2);
});

it('says clearly when the server cannot be reached', async () => {
  const error = await openStore('postgres://postgres@127.0.0.1:1/postgres').catch((e: unknown) => e);
  expect(error).toBeInstanceOf(StoreUnavailableError);
  expect((error as Error).message).toMatch(/^cannot store: PostgreSQL is unavailable \(ECONNREFUSED/);
});
