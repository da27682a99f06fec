/**
 * Several instances on one PostgreSQL database (here three servers in this process, each with its
 * own store pool, feed and status engine: they share nothing but the database). Messages go in
 * through API-only instance A; B (API and workers) and C (worker-only) run them, woken by A's enqueue
 * notification (the fallback poll is set to a minute, so no poll can do it); a subscriber on A is
 * pushed the workers' progress and ends on the exact final status, which A and B answer and a recount
 * of the raw tasks confirms, also after every listening connection was killed mid-run.
 */
import { createClient } from 'graphql-ws';
import pg from 'pg';
import { afterEach, expect, inject, it } from 'vitest';
import WebSocket from 'ws';
import { presenceName } from '../src/feed/postgres-feed.ts';
import { startTestServer, type TestServer } from './server-helpers.ts';
import { POSTGRES } from './support/stores.ts';
import { COUNTS, type Counts, send, statusOf } from './transports.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function instances(): Promise<{ a: TestServer; b: TestServer; c: TestServer; schema: string }> {
  const location = await POSTGRES.fresh();
  cleanups.push(location.dispose);
  const config = { databaseUrl: location.url, demoTaskMs: 2 };
  const a = await startTestServer({
    config: { ...config, workerConcurrency: 0 },
    scheduler: { pollMs: 60_000 },
  });
  cleanups.push(() => a.close());
  const b = await startTestServer({
    config: { ...config, workerConcurrency: 4 },
    scheduler: { pollMs: 60_000 },
  });
  cleanups.push(() => b.close());
  // C: worker-only (health checks only), on the same database.
  const c = await startTestServer({
    config: { ...config, workerConcurrency: 2, serveApi: false },
    scheduler: { pollMs: 60_000 },
  });
  cleanups.push(() => c.close());
  return { a, b, c, schema: new URL(location.url).searchParams.get('schema')! };
}

/** Watches the workspace on `server`; `until` resolves once a pushed status is idle with `total` tasks. */
function watch(server: TestServer): { events: Counts[]; until: (total: number) => Promise<Counts> } {
  const events: Counts[] = [];
  const client = createClient({
    url: server.url.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    retryAttempts: 0,
  });
  cleanups.push(async () => client.dispose());
  const waiters: (() => void)[] = [];
  client.subscribe<{ deriverStatus: Counts }>(
    { query: `subscription{deriverStatus(coalesceMs:20){${COUNTS}}}` },
    {
      next: (r) => {
        events.push(r.data!.deriverStatus);
        for (const wake of waiters.splice(0)) wake();
      },
      error: () => {},
      complete: () => {},
    },
  );
  const until = async (total: number): Promise<Counts> => {
    for (;;) {
      const last = events.at(-1);
      if (last && last.totalWorkUnits === total && last.pendingWorkUnits + last.inProgressWorkUnits === 0) {
        return last;
      }
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
  };
  return { events, until };
}

async function feedMessages(server: TestServer, sessions: number, perSession: number): Promise<number> {
  let tasks = 0;
  for (let s = 0; s < sessions; s++) {
    const setup = `mutation{upsertSession(id:"s${s}",peers:[{peerId:"p${s}"},{peerId:"q${s}",observeOthers:true}],settings:{summariesEnabled:false}){id}}`;
    expect((await send('http', server.url, { query: setup })).code).toBe('OK');
  }
  for (let s = 0; s < sessions; s++) {
    const messages = Array.from({ length: perSession }, (_, i) => ({ peerId: `p${s}`, content: `m${i}` }));
    const outcome = await send('http', server.url, {
      query: 'mutation($s:ID!,$m:[MessageInput!]!){addMessages(sessionId:$s,messages:$m){enqueuedTasks}}',
      variables: { s: `s${s}`, m: messages },
    });
    expect(outcome.code).toBe('OK');
    tasks += (outcome.data as { addMessages: { enqueuedTasks: number } }).addMessages.enqueuedTasks;
  }
  return tasks;
}

it("an enqueue on A wakes B, and a subscriber on A ends on the exact final status of B's work", async () => {
  const { a, b, c } = await instances();
  const watching = watch(a);
  expect(await feedMessages(a, 10, 20)).toBe(400);
  const final = await watching.until(400);
  expect(final).toEqual({
    totalWorkUnits: 400,
    completedWorkUnits: 400,
    pendingWorkUnits: 0,
    inProgressWorkUnits: 0,
  });
  expect(await statusOf(a.url)).toEqual(final);
  expect(await statusOf(b.url)).toEqual(final);
  const raw = await b.app.store.listTasks();
  expect(raw.length).toBe(400);
  expect(raw.every((t) => t.state === 'succeeded')).toBe(true);
  expect(watching.events.length).toBeGreaterThan(2); // pushed while B worked, not only at the end
  // C is worker-only: it took part (its workers ran tasks too, or could) but serves no GraphQL.
  expect(
    (await fetch(c.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }))
      .status,
  ).toBe(404);
  expect((await fetch(c.url.replace('/graphql', '/readyz'))).status).toBe(200);
});

it('subscribers still end exact when the listening connections are killed during the work', async () => {
  const { a, b, schema } = await instances();
  const watching = watch(a);
  const admin = new pg.Client({ connectionString: inject('postgresUrl') });
  await admin.connect();
  cleanups.push(() => admin.end());
  const feeding = feedMessages(a, 10, 20);
  await expect.poll(() => watching.events.length).toBeGreaterThan(1);
  // Each instance's listening connection names itself (`presenceName`), whatever it ran last.
  const channel = `deriver_changes_${schema}`;
  const killed = await admin.query(
    'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE $1 OR application_name LIKE $2',
    [`${presenceName(channel, 'worker')}%`, `${presenceName(channel, 'api')}%`],
  );
  expect(killed.rowCount).toBe(3);
  expect(await feeding).toBe(400);
  // Whatever was missed while they were down, the resync after reconnecting makes it up.
  const final = await watching.until(400);
  expect(final).toMatchObject({ totalWorkUnits: 400, completedWorkUnits: 400 });
  expect(await statusOf(a.url)).toEqual(final);
  expect(await statusOf(b.url)).toEqual(final);
  await expect.poll(async () => (await fetch(a.url.replace('/graphql', '/readyz'))).status).toBe(200);
});
