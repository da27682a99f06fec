/**
 * `/metrics` of a real server, scraped the way Prometheus does, while a workload runs: the values
 * move with it and end equal to the status.
 */
import { createClient } from 'graphql-ws';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { TaskHandler } from '../src/scheduler/options.ts';
import { startTestServer, type TestServer } from './server-helpers.ts';
import { send } from './transports.ts';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** `name{labels} value` lines of a scrape, by `name{labels}`. */
async function scrape(
  s: TestServer,
): Promise<{ type: string | null; values: Map<string, number>; text: string }> {
  const response = await fetch(s.url.replace('/graphql', '/metrics'));
  const text = await response.text();
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    values.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return { type: response.headers.get('content-type'), values, text };
}

describe('/metrics', () => {
  it('reports tasks by state and type, durations, retries, the oldest pending task, subscriptions and sockets', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const handler: TaskHandler = async ({ task, attempt }) => {
      await gate;
      if (task.messages[0]?.content === 'flaky' && attempt === 1) throw new Error('try again');
    };
    server = await startTestServer({
      handlers: { representation: handler, summary: handler },
      scheduler: { retryBaseMs: 1, retryMaxMs: 2 },
    });
    const run = async (query: string) => expect((await send('http', server!.url, { query })).code).toBe('OK');
    await run('mutation{upsertWorkspace(id:"default",settings:{summariesEnabled:false}){id}}');
    await run(
      'mutation{upsertSession(id:"s",peers:[{peerId:"alice"},{peerId:"bob",observeOthers:true}]){id}}',
    );
    await run(
      'mutation{addMessages(sessionId:"s",messages:[{peerId:"alice",content:"hi"},{peerId:"alice",content:"flaky"},{peerId:"bob",content:"yo"}]){enqueuedTasks}}',
    );

    const ws = createClient({
      url: server.url.replace(/^http/, 'ws'),
      webSocketImpl: WebSocket,
      lazy: false,
    });
    const events: unknown[] = [];
    const off = ws.subscribe(
      { query: 'subscription{deriverStatus(coalesceMs:0){completedWorkUnits}}' },
      { next: (e) => void events.push(e), error: () => {}, complete: () => {} },
    );
    await expect.poll(() => events.length).toBeGreaterThan(0);

    const before = await scrape(server);
    expect(before.type).toContain('text/plain');
    const v = before.values;
    const running = v.get('deriver_tasks{state="running",task_type="representation"}') ?? 0;
    expect(running + (v.get('deriver_tasks{state="pending",task_type="representation"}') ?? 0)).toBe(5);
    expect(v.get('deriver_tasks{state="retrying",task_type="representation"}')).toBe(0);
    expect(v.get('deriver_tasks{state="pending",task_type="summary"}')).toBe(0);
    expect(v.get('deriver_task_duration_seconds_count{task_type="representation",outcome="succeeded"}')).toBe(
      undefined,
    );
    // The subscription's filter is held in memory, read once from the store.
    expect(v.get('deriver_status_sums{kind="watched"}')).toBe(1);
    expect(v.get('deriver_status_reads_total')).toBeGreaterThanOrEqual(1);
    expect(v.get('deriver_oldest_pending_seconds')).toBeGreaterThanOrEqual(0);
    expect(v.get('deriver_subscriptions')).toBe(1);
    expect(v.get('deriver_websocket_connections')).toBe(1);
    expect(v.get('deriver_worker_processes')).toBe(1); // this process: SQLite serves one
    expect(before.text).toContain('process_cpu_user_seconds_total');

    release();
    await expect
      .poll(async () =>
        (await scrape(server!)).values.get(
          'deriver_task_duration_seconds_count{task_type="representation",outcome="succeeded"}',
        ),
      )
      .toBe(5);
    const after = (await scrape(server)).values;
    expect(after.get('deriver_tasks{state="running",task_type="representation"}')).toBe(0);
    expect(after.get('deriver_tasks{state="pending",task_type="representation"}')).toBe(0);
    // "flaky" failed once for each of its two observers (alice observes herself, bob observes alice).
    expect(after.get('deriver_task_retries_total{task_type="representation"}')).toBe(2);
    expect(
      after.get('deriver_task_duration_seconds_count{task_type="representation",outcome="succeeded"}'),
    ).toBe(5);
    expect(
      after.get('deriver_task_duration_seconds_count{task_type="representation",outcome="retried"}'),
    ).toBe(2);
    expect(after.get('deriver_oldest_pending_seconds')).toBe(0);
    expect(after.get('deriver_subscription_events_total')).toBe(events.length);
    off();
    await ws.dispose();
    await expect
      .poll(async () => (await scrape(server!)).values.get('deriver_websocket_connections'))
      .toBe(0);
  });

  it('is served by a worker-only instance too (which serves no API)', async () => {
    server = await startTestServer({ config: { serveApi: false } });
    const { values } = await scrape(server);
    expect(values.has('deriver_subscriptions')).toBe(true);
    expect((await fetch(server.url)).status).toBe(404);
  });
});
