/**
 * Retention on a real server: finished task rows older than RETENTION are pruned on a schedule in
 * small batches while work goes on, and no count changes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/server/config.ts';
import { startTestServer, type TestServer } from './server-helpers.ts';
import { send } from './transports.ts';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe('retention', () => {
  it('reads RETENTION as a duration, 7 days by default, off to keep everything', () => {
    expect(loadConfig({}).retentionMs).toBe(7 * 86_400_000);
    expect(loadConfig({ RETENTION: '12h' }).retentionMs).toBe(12 * 3_600_000);
    expect(loadConfig({ RETENTION: 'off' }).retentionMs).toBeNull();
    expect(() => loadConfig({ RETENTION: 'a week' })).toThrow(
      'RETENTION must be a duration like 30m, 12h or 7d, or off (got "a week")',
    );
  });

  it('prunes old finished rows in batches while tasks keep running; the counts never change', async () => {
    server = await startTestServer({
      config: { retentionMs: 300, demoTaskMs: 2 },
      retention: { intervalMs: 100, batchSize: 7, pauseMs: 1 },
    });
    const s = server;
    const run = async (query: string) => expect((await send('http', s.url, { query })).code).toBe('OK');
    await run('mutation{upsertWorkspace(id:"default",settings:{summariesEnabled:false}){id}}');
    await run(
      'mutation{upsertSession(id:"s",peers:[{peerId:"alice"},{peerId:"bob",observeOthers:true}]){id}}',
    );
    const batch = Array.from({ length: 30 }, (_, i) => `{peerId:"alice",content:"m${i}"}`).join(',');
    const totals: number[] = [];
    let pruned = false;
    // Keep adding work until rows have been pruned at least once while work was going on.
    for (let round = 0; round < 40 && !pruned; round++) {
      await run(`mutation{addMessages(sessionId:"s",messages:[${batch}]){enqueuedTasks}}`);
      totals.push((await s.app.status.get({ workspaceId: 'default' })).totalWorkUnits);
      await new Promise((resolve) => setTimeout(resolve, 100));
      const rows = await s.app.store.listTasks();
      pruned = rows.length < (await s.app.status.get({ workspaceId: 'default' })).totalWorkUnits;
    }
    expect(pruned).toBe(true);
    const sent = totals.length * 60;
    await expect
      .poll(async () => (await s.app.status.get({ workspaceId: 'default' })).completedWorkUnits, {
        timeout: 20_000,
      })
      .toBe(sent);
    expect(await s.app.status.get({ workspaceId: 'default' })).toMatchObject({
      totalWorkUnits: sent,
      completedWorkUnits: sent,
      failedWorkUnits: 0,
      pendingWorkUnits: 0,
    });
    // Eventually every finished row is older than the retention: all pruned, counts unchanged.
    await expect.poll(async () => (await s.app.store.listTasks()).length, { timeout: 10_000 }).toBe(0);
    expect((await s.app.status.get({ workspaceId: 'default' })).totalWorkUnits).toBe(sent);
    // And the store's own sums (what a restart or a cold query reads) agree.
    const stored = await s.app.store.sumCounters({ workspaceId: 'default' }, { sessions: false });
    expect(stored.total.completed).toBe(sent);
  });
});
