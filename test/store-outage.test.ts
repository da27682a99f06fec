/**
 * A PostgreSQL outage with work in flight, seen from outside: two instances (API and workers) on a
 * private server that the test really stops, for three leases, and starts again. Every subscriber
 * (WebSocket on one instance, Server-Sent Events on the other) is told at once that its counts are
 * no longer live (`live: false`, with the reason), and once the store is back gets `live: true` and
 * the exact final status; no acknowledged message loses a task. The dashboard (a real browser)
 * says the store is down, then live again.
 */
import { createClient } from 'graphql-ws';
import { afterEach, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createDeriverClient } from '../src/client/index.ts';
import { startTestServer, type TestServer } from './server-helpers.ts';
import { launchChromium } from './support/browser.ts';
import { startPrivatePostgres } from './support/postgres-server.ts';
import { COUNTS, type Counts, statusOf } from './transports.ts';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

type Seen = Counts & { live: boolean; notLiveReason: string | null };
const SUBSCRIPTION = `subscription { deriverStatus(coalesceMs: 20) { ${COUNTS} live notLiveReason } }`;

/** Every event a subscriber receives, and a way to wait for one that matches. */
function recorder() {
  const events: Seen[] = [];
  const waiters = new Set<() => void>();
  return {
    events,
    push(event: Seen) {
      events.push(event);
      for (const wake of [...waiters]) wake();
    },
    until(match: (event: Seen) => boolean): Promise<Seen> {
      return new Promise((resolve) => {
        const check = () => {
          const last = events.at(-1);
          if (last && match(last)) {
            waiters.delete(check);
            resolve(last);
          }
        };
        waiters.add(check);
        check();
      });
    },
  };
}

function overWebSocket(server: TestServer) {
  const seen = recorder();
  const client = createClient({
    url: server.url.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    retryAttempts: 0,
  });
  cleanups.push(() => client.dispose());
  client.subscribe<{ deriverStatus: Seen }>(
    { query: SUBSCRIPTION },
    { next: (r) => seen.push(r.data!.deriverStatus), error: () => {}, complete: () => {} },
  );
  return seen;
}

async function overSse(server: TestServer) {
  const seen = recorder();
  const controller = new AbortController();
  cleanups.push(() => controller.abort());
  const response = await fetch(server.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ query: SUBSCRIPTION }),
    signal: controller.signal,
  });
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  void (async () => {
    let buffer = '';
    for (;;) {
      const { done, value } = await reader.read().catch(() => ({ done: true, value: '' }));
      if (done) return;
      buffer += value;
      const blocks = buffer.split('\n\n');
      buffer = blocks.pop() ?? '';
      for (const block of blocks) {
        const data = block.split('\n').find((line) => line.startsWith('data: '));
        if (block.includes('event: next') && data)
          seen.push((JSON.parse(data.slice(6)) as { data: { deriverStatus: Seen } }).data.deriverStatus);
      }
    }
  })();
  return seen;
}

it('every subscriber hears of a PostgreSQL outage past a lease, and ends exact when the store is back', async () => {
  const postgres = await startPrivatePostgres();
  cleanups.push(() => postgres.stop());
  const leaseMs = 2_000;
  const config = { databaseUrl: postgres.url, workerConcurrency: 2, leaseMs, demoTaskMs: 25 };
  const a = await startTestServer({ config });
  cleanups.push(() => a.close());
  const b = await startTestServer({ config });
  cleanups.push(() => b.close());
  const ws = overWebSocket(a);
  const sse = await overSse(b);
  await Promise.all([ws.until((e) => e.live), sse.until((e) => e.live)]);
  const browser = await launchChromium();
  cleanups.push(() => browser.close());
  const page = await browser.newPage();
  await page.goto(new URL('/', a.url).toString());
  const badge = page.locator('#state');
  await expect.poll(() => badge.textContent()).toBe('live');

  const client = createDeriverClient({ url: a.url });
  cleanups.push(() => client.close());
  let acknowledged = 0;
  for (let s = 0; s < 4; s++) {
    await client.upsertSession({
      id: `s${s}`,
      peers: [{ peerId: 'alice' }, { peerId: 'bob', observeOthers: true }],
    });
    for (let m = 0; m < 5; m++) {
      const sent = await client.addMessages({
        sessionId: `s${s}`,
        messages: [{ peerId: m % 2 ? 'bob' : 'alice', content: `m${m}` }],
      });
      acknowledged += sent.enqueuedTasks;
    }
  }
  // Work in flight: some done, some not.
  await ws.until((e) => e.completedWorkUnits > 0 && e.completedWorkUnits < acknowledged);

  await postgres.down();
  const [wsDown, sseDown] = await Promise.all([ws.until((e) => !e.live), sse.until((e) => !e.live)]);
  expect(wsDown.notLiveReason).toMatch(/the store cannot be heard/);
  expect(sseDown.notLiveReason).toMatch(/the store cannot be heard/);
  await expect.poll(() => badge.textContent()).toBe('store down');
  expect(await page.locator('#notice').textContent()).toMatch(/the store cannot be heard/);
  // The outage lasts three leases: every claim held when it began has expired when it ends.
  await new Promise((resolve) => setTimeout(resolve, 3 * leaseMs));
  await postgres.up();

  const done = (e: Seen) =>
    e.live && e.completedWorkUnits === acknowledged && e.totalWorkUnits === acknowledged;
  const [wsLast, sseLast] = await Promise.all([ws.until(done), sse.until(done)]);
  const exact = {
    totalWorkUnits: acknowledged,
    completedWorkUnits: acknowledged,
    pendingWorkUnits: 0,
    inProgressWorkUnits: 0,
  };
  expect(wsLast).toMatchObject(exact);
  expect(sseLast).toMatchObject(exact);
  expect(await statusOf(a.url)).toEqual(exact);
  expect(await statusOf(b.url)).toEqual(exact);
  await expect.poll(() => badge.textContent()).toBe('live');
  expect(await page.locator('#notice').textContent()).toBe('');
  // Each subscriber saw the outage begin and end, in that order, and nothing after the exact end.
  for (const seen of [ws, sse]) {
    const firstDown = seen.events.findIndex((e) => !e.live);
    expect(firstDown).toBeGreaterThan(0);
    expect(seen.events.slice(firstDown).some((e) => e.live)).toBe(true);
  }
}, 60_000);
