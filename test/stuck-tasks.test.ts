/**
 * Stuck tasks (docs/configuration.md, `..._STUCK_AFTER`) on a real server: a task running past its
 * type's stuck time fires `task:stuck` once, is flagged on its work unit, counted in the status
 * (`stuckTasks`) and in `/metrics`, and logged once; a task of a type without a stuck time is not.
 */
import { afterEach, expect, it } from 'vitest';
import { createDeriverClient } from '../src/client/index.ts';
import type { TaskHandler } from '../src/scheduler/options.ts';
import { deferred } from './helpers.ts';
import { startTestServer, type TestServer } from './server-helpers.ts';
import { launchChromium } from './support/browser.ts';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

it('flags a task running past its stuck time: once as an event, on its unit, in the status and the metrics', async () => {
  const gate = deferred();
  const handler: TaskHandler = () => gate.promise;
  server = await startTestServer({
    handlers: { representation: handler, summary: handler },
    config: {
      workerConcurrency: 2,
      taskTypes: { batches: {}, limits: { representation: { stuckAfterMs: 50 } } },
    },
  });
  const stuck: number[] = [];
  const firstStuck = deferred();
  server.app.scheduler.events.on('task:stuck', ({ task, stuckAfterMs, runningMs }) => {
    stuck.push(task.id);
    expect(stuckAfterMs).toBe(50);
    expect(runningMs).toBeGreaterThanOrEqual(50);
    firstStuck.resolve();
  });
  const run = async (query: string) => {
    const result = await server!.http<Record<string, unknown>>(query);
    expect(result.errors).toBeUndefined();
    return result.data as Record<string, never>;
  };
  await run('mutation { upsertWorkspace(id: "default", settings: { summariesEnabled: false }) { id } }');
  await run('mutation { upsertSession(id: "s", peers: [{ peerId: "a" }]) { id } }');
  await run(
    'mutation { addMessages(sessionId: "s", messages: [{ peerId: "a", content: "slow" }]) { enqueuedTasks } }',
  );
  await firstStuck.promise;

  const data = await run(`{
    deriverStatus(sessionId: "s") { inProgressWorkUnits stuckTasks }
    workUnits { nodes { stuck running { taskId } } }
  }`);
  expect(data).toEqual({
    deriverStatus: { inProgressWorkUnits: 1, stuckTasks: 1 },
    workUnits: { nodes: [{ stuck: true, running: { taskId: String(stuck[0]) } }] },
  });
  const metrics = await (await fetch(server.url.replace(/\/graphql$/, '/metrics'))).text();
  expect(metrics).toMatch(/^deriver_stuck_tasks\{task_type="representation"\} 1$/m);
  expect(metrics).toMatch(/^deriver_task_stuck_total\{task_type="representation"\} 1$/m);

  // The dashboard shows it too.
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    await page.goto(server.url.replace(/\/graphql$/, '/'));
    await page.waitForFunction(() => document.querySelector('[data-testid="stuck"]')?.textContent === '1');
  } finally {
    await browser.close();
  }

  gate.resolve();
  const client = createDeriverClient({ url: server.url });
  try {
    await client.waitForIdle({ sessionId: 's' });
  } finally {
    await client.close();
  }
  const idle = await run('{ deriverStatus(sessionId: "s") { completedWorkUnits stuckTasks } }');
  expect(idle.deriverStatus).toEqual({ completedWorkUnits: 1, stuckTasks: 0 });
  // The event fired once for the attempt, whatever the checks after it.
  expect(stuck).toHaveLength(1);
});
