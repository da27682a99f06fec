/**
 * The live dashboard at `/` in a real browser (Debian's chromium): counts move on the page while
 * tasks run, failed tasks show with their error and a working Retry button, and with auth on the
 * page works once a key is entered. Screenshots go to `test-results/` (part-way and at the end).
 */
import { mkdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { SignJWT } from 'jose';
import type { Browser, Page } from 'playwright-core';
import { afterEach, expect, it } from 'vitest';
import type { TaskHandler } from '../src/scheduler/options.ts';
import { startTestServer, type TestServer } from './server-helpers.ts';
import { launchChromium } from './support/browser.ts';
import { send } from './transports.ts';

const SHOTS = new URL('../test-results/', import.meta.url).pathname;
let server: TestServer | undefined;
let browser: Browser | undefined;
afterEach(async () => {
  await browser?.close();
  await server?.close();
});

const number = async (page: Page, id: string): Promise<number> =>
  Number((await page.locator(`[data-testid="${id}"]`).textContent())?.replace(/[^\d.]/g, ''));

async function run(s: TestServer, query: string, token?: string): Promise<void> {
  const outcome = await send('http', s.url, { query, token });
  expect(outcome.code, query).toBe('OK');
}

it('shows counts moving while tasks run, failed tasks with their error, and retries one from its button', async () => {
  let broken = true;
  const handler: TaskHandler = async ({ task, signal }) => {
    await sleep(40, undefined, { signal });
    if (broken && task.messages.some((m) => m.content.includes('bad')))
      throw new Error('the model refused this one');
  };
  server = await startTestServer({
    handlers: { representation: handler, summary: handler },
    config: { workerConcurrency: 2 },
    scheduler: { maxAttempts: 1 },
  });
  await run(server, 'mutation{upsertWorkspace(id:"default",settings:{summariesEnabled:false}){id}}');
  browser = await launchChromium();
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  page.on('console', (message) => message.type() === 'error' && errors.push(message.text()));
  await page.goto(server.url.replace(/\/graphql$/, '/'));
  await page.locator('#state.live').waitFor();

  for (const session of ['onboarding', 'support-42']) {
    await run(
      server,
      `mutation{upsertSession(id:"${session}",peers:[{peerId:"alice",observeOthers:true},{peerId:"bob",observeOthers:true}]){id}}`,
    );
  }
  const messages = Array.from(
    { length: 20 },
    (_, i) => `{peerId:"${i % 2 ? 'bob' : 'alice'}",content:"${i === 7 ? 'bad input' : `message ${i}`}"}`,
  );
  await run(
    server,
    `mutation{addMessages(sessionId:"onboarding",messages:[${messages.join(',')}]){enqueuedTasks}}`,
  );
  await run(
    server,
    `mutation{addMessages(sessionId:"support-42",messages:[${messages.slice(0, 10).join(',')}]){enqueuedTasks}}`,
  );

  // Counts move on the page: seen part-way, then at the end.
  await page.waitForFunction(() => {
    const done = Number(document.querySelector('[data-testid="succeeded"]')?.textContent);
    return done > 0 && done < 56;
  });
  const partWay = await number(page, 'succeeded');
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: `${SHOTS}dashboard-running.png`, fullPage: true });
  expect(await number(page, 'total')).toBe(60);
  await page.locator('tr[data-session="support-42"]').waitFor();
  await page.waitForFunction(() => document.querySelector('[data-testid="succeeded"]')?.textContent === '56');
  expect(partWay).toBeGreaterThan(0);
  expect(await number(page, 'failed')).toBe(4);
  // Finished counts the failed ones too, and says so; succeeded and failed are shown apart.
  expect(await page.locator('[data-testid="percent"]').textContent()).toBe('100%');
  expect(await page.locator('[data-testid="percent-label"]').textContent()).toBe(
    'finished, 4 of them failed',
  );
  // The chart drew the backlog and the throughput while the tasks ran.
  expect((await page.locator('#chart .backlog').getAttribute('points'))?.split(' ').length).toBeGreaterThan(
    1,
  );
  expect(await number(page, 'backlog-peak')).toBeGreaterThan(0);
  expect(await number(page, 'rate-peak')).toBeGreaterThan(0);
  expect(await number(page, 'rate')).toBeGreaterThan(0);
  await expect.poll(() => page.locator('[data-testid="eta"]').textContent()).toBe('0 s');
  const failedRows = page.locator('#failed tr[data-task]');
  await expect.poll(() => failedRows.count()).toBe(4);
  expect(await failedRows.first().locator('.error').textContent()).toBe('the model refused this one');
  await page.screenshot({ path: `${SHOTS}dashboard.png`, fullPage: true });

  // Retry one task from its button: it runs again and the page follows.
  broken = false;
  await failedRows.first().locator('button').click();
  await page.waitForFunction(() => document.querySelector('[data-testid="failed"]')?.textContent === '3');
  await expect.poll(() => failedRows.count()).toBe(3);
  await page.waitForFunction(() => document.querySelector('[data-testid="succeeded"]')?.textContent === '57');
  expect(errors).toEqual([]);
});

it('with auth on, asks for a key and works once one is entered', async () => {
  const secret = 'dashboard-test-secret-at-least-32-bytes';
  server = await startTestServer({ config: { authJwtSecret: secret, demoTaskMs: 5 } });
  const key = await new SignJWT({ w: 'default' })
    .setProtectedHeader({ alg: 'HS256' })
    .sign(new TextEncoder().encode(secret));
  await run(server, 'mutation{upsertSession(id:"x",peers:[{peerId:"alice"}]){id}}', key);
  await run(
    server,
    'mutation{addMessages(sessionId:"x",messages:[{peerId:"alice",content:"hi"}]){enqueuedTasks}}',
    key,
  );
  browser = await launchChromium();
  const page = await browser.newPage();
  await page.goto(server.url.replace(/\/graphql$/, '/'));
  await page.locator('#state.down').waitFor();
  expect(await page.locator('#notice').textContent()).toContain('enter a key above');
  await page.locator('#key').fill(key);
  await page.locator('#key').press('Enter');
  await page.locator('#state.live').waitFor();
  await page.waitForFunction(() => document.querySelector('[data-testid="total"]')?.textContent === '1');
  expect(await page.locator('tr[data-session="x"]').count()).toBe(1);
});

it('says a workspace with no tasks has none and names those that do; without a key, shows no counts at all', async () => {
  server = await startTestServer({ config: { demoTaskMs: 1 } });
  await run(server, 'mutation{upsertSession(workspaceId:"acme",id:"s",peers:[{peerId:"a"}]){id}}');
  await run(
    server,
    'mutation{addMessages(workspaceId:"acme",sessionId:"s",messages:[{peerId:"a",content:"x"}]){enqueuedTasks}}',
  );
  browser = await launchChromium();
  const page = await browser.newPage();
  await page.goto(`${server.url.replace(/\/graphql$/, '/')}?workspace=nope-typo`);
  await page.locator('#state.live').waitFor();
  await expect
    .poll(() => page.locator('#sessions').textContent())
    .toBe('Workspace "nope-typo" has no tasks. Workspaces with tasks: acme.');
  expect(await page.locator('[data-testid="total"]').textContent()).toBe('0');

  // Auth on and no key: the error, and dashes instead of zeros and "No tasks yet".
  const secret = 'dashboard-test-secret-at-least-32-bytes';
  const locked = await startTestServer({ config: { authJwtSecret: secret } });
  try {
    const guarded = await browser.newPage();
    await guarded.goto(locked.url.replace(/\/graphql$/, '/'));
    await guarded.locator('#state.down').waitFor();
    expect(await guarded.locator('#notice').textContent()).toContain('enter a key above');
    expect(await guarded.locator('[data-testid="total"]').textContent()).toBe('–');
    expect(await guarded.locator('[data-testid="pending"]').textContent()).toBe('–');
    expect(await guarded.locator('#sessions').textContent()).toBe('Enter a key above to see this workspace.');
  } finally {
    await locked.close();
  }
});

it("a workspace picker lists the workspaces with work; the demo's link opens its workspace; an empty one shows no percent", async () => {
  server = await startTestServer({ config: { demoTaskMs: 1 } });
  const empty = await startTestServer();
  try {
    for (const workspace of ['default', 'demo-abc']) {
      await run(
        server,
        `mutation{upsertSession(workspaceId:"${workspace}",id:"s",peers:[{peerId:"a"}]){id}}`,
      );
    }
    await run(
      server,
      'mutation{addMessages(workspaceId:"demo-abc",sessionId:"s",messages:[{peerId:"a",content:"x"},{peerId:"a",content:"y"}]){enqueuedTasks}}',
    );
    browser = await launchChromium();
    const page = await browser.newPage();
    await page.goto(server.url.replace(/\/graphql$/, '/'));
    await page.locator('#state.live').waitFor();
    await expect
      .poll(() => page.locator('#workspace option').allTextContents())
      .toEqual(['default', 'demo-abc']);
    expect(await page.locator('[data-testid="percent"]').textContent()).toBe('–');
    expect(await page.locator('[data-testid="percent-label"]').textContent()).toBe('no tasks yet');
    await page.locator('#workspace').selectOption('demo-abc');
    await page.waitForFunction(
      () => document.querySelector('[data-testid="succeeded"]')?.textContent === '2',
    );
    expect(new URL(page.url()).searchParams.get('workspace')).toBe('demo-abc');
    // The link the demo prints opens its workspace directly.
    const linked = await browser.newPage();
    await linked.goto(`${server.url.replace(/\/graphql$/, '/')}?workspace=demo-abc`);
    await linked.waitForFunction(() => document.querySelector('[data-testid="total"]')?.textContent === '2');
    expect(await linked.locator('#workspace').inputValue()).toBe('demo-abc');
    // A server with no work at all: the picker still names the workspace shown.
    const none = await browser.newPage();
    await none.goto(empty.url.replace(/\/graphql$/, '/'));
    await none.locator('#state.live').waitFor();
    expect(await none.locator('#workspace option').allTextContents()).toEqual(['default']);
  } finally {
    await empty.close();
  }
});

it.each([
  ['phone', 360, 740, 'light'],
  ['phone', 390, 844, 'dark'],
  ['desktop', 1440, 900, 'light'],
  ['wide', 2560, 1300, 'dark'],
] as const)(
  'fits a %s screen (%i × %i px) in %s mode, with no sideways scroll',
  async (name, width, height, scheme) => {
    server = await startTestServer({ config: { workerConcurrency: 0 } });
    await run(
      server,
      'mutation{upsertSession(id:"a-session-with-a-rather-long-name-0001",peers:[{peerId:"alice",observeOthers:true},{peerId:"bob"}]){id}}',
    );
    await run(
      server,
      'mutation{addMessages(sessionId:"a-session-with-a-rather-long-name-0001",messages:[{peerId:"alice",content:"x"},{peerId:"bob",content:"y"}]){enqueuedTasks}}',
    );
    browser = await launchChromium();
    const page = await browser.newPage({ viewport: { width, height }, colorScheme: scheme });
    await page.goto(server.url.replace(/\/graphql$/, '/'));
    await page.locator('tr[data-session]').waitFor();
    const layout = await page.evaluate(() => ({
      scrollWidth: document.documentElement.scrollWidth,
      innerWidth: window.innerWidth,
      background: getComputedStyle(document.body).backgroundColor,
      mainWidth: document.querySelector('main')?.getBoundingClientRect().width ?? 0,
    }));
    expect(layout.scrollWidth).toBeLessThanOrEqual(layout.innerWidth);
    // Every count of a session is in view, its succeeded and failed too (on a phone they were
    // scrolled off to the side of the table, past the edge of its scrolling box).
    const row = page.locator('tr[data-session]').first();
    const frame = await page.locator('#sessions-table').locator('xpath=..').boundingBox();
    for (const cell of await row.locator('td').all()) {
      if (!(await cell.isVisible())) continue;
      const box = await cell.boundingBox();
      expect(box && box.x + box.width).toBeLessThanOrEqual((frame?.x ?? 0) + (frame?.width ?? 0) + 0.5);
    }
    expect(await row.locator('td:visible').count()).toBeGreaterThanOrEqual(5);
    const [r = 0, g = 0, b = 0] = (layout.background.match(/\d+/g) ?? []).map(Number);
    const luminance = (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
    if (scheme === 'dark') expect(luminance).toBeLessThan(0.2);
    else expect(luminance).toBeGreaterThan(0.8);
    // A wide screen is used, not left a third empty.
    expect(layout.mainWidth).toBeGreaterThan(Math.min(width, 2400) * 0.9);
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: `${SHOTS}dashboard-${name}-${width}-${scheme}.png`, fullPage: true });
  },
);

it('lists the units that wait and why: a batch filling, with its tokens and tasks of their targets', async () => {
  server = await startTestServer({
    config: {
      taskTypes: {
        batches: { representation: { maxTasks: 50, maxTokens: 512, maxWaitMs: 3_600_000 } },
        limits: {},
      },
    },
  });
  await run(server, 'mutation{upsertWorkspace(id:"default",settings:{summariesEnabled:false}){id}}');
  browser = await launchChromium();
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  await page.goto(server.url.replace(/\/graphql$/, '/'));
  await page.locator('#state.live').waitFor();
  await run(server, 'mutation{upsertSession(id:"chat",peers:[{peerId:"alice"}]){id}}');
  // 40 characters: 10 tokens each.
  const text = 'x'.repeat(40);
  await run(
    server,
    `mutation{addMessages(sessionId:"chat",messages:[{peerId:"alice",content:"${text}"},{peerId:"alice",content:"${text}"}]){enqueuedTasks}}`,
  );
  const row = page.locator('#waiting tr[data-unit]');
  await expect.poll(() => row.count()).toBe(1);
  expect(await row.locator('td').allTextContents()).toEqual([
    'alice ← alice',
    'chat',
    '2',
    // An hour from the first task, counted down in whole seconds: "1 h 0 min" within half a second.
    expect.stringMatching(/^its batch: 20\/512 tokens, 2\/50 tasks \(goes in (1 h 0 min|59 min \d+ s)\)$/),
  ]);
});

it('opens with the chart of work it did not see, says how many more units wait, and that no worker runs them', async () => {
  server = await startTestServer({ config: { workerConcurrency: 0 } });
  await run(server, 'mutation{upsertWorkspace(id:"default",settings:{summariesEnabled:false}){id}}');
  for (let i = 0; i < 25; i++) {
    await run(
      server,
      `mutation{upsertSession(id:"s${i}",peers:[{peerId:"p${i}"}]){id} addMessages(sessionId:"s${i}",messages:[{peerId:"p${i}",content:"x"}]){enqueuedTasks}}`,
    );
  }
  // The server samples the workspace while no page is open: wait for two samples.
  const history = async () =>
    (
      await server!.http<{ deriverStatusHistory: { samples: { pendingWorkUnits: number }[] } }>(
        '{deriverStatusHistory{samples{pendingWorkUnits}}}',
      )
    ).data?.deriverStatusHistory.samples ?? [];
  await expect.poll(async () => (await history()).length).toBeGreaterThanOrEqual(2);
  expect((await history()).at(-1)?.pendingWorkUnits).toBe(25);

  browser = await launchChromium();
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  await page.goto(server.url.replace(/\/graphql$/, '/'));
  await page.locator('#state.live').waitFor();
  // The backlog line starts before the page was opened (x is time over the last 10 minutes).
  await page.waitForFunction(() => {
    const points = document.querySelector('#chart .backlog')?.getAttribute('points')?.split(' ') ?? [];
    const first = Date.now() - 600_000 + (Number(points[0]?.split(',')[0]) * 600_000) / 600;
    return points.length >= 3 && first < performance.timeOrigin;
  });
  expect(await page.locator('[data-testid="backlog-peak"]').textContent()).toBe('25');
  // 20 units listed, and the rest counted.
  await expect.poll(() => page.locator('#waiting tr[data-unit]').count()).toBe(20);
  expect(await page.locator('#waiting [data-testid="waiting-more"]').textContent()).toBe(
    'and 5 more (workUnits in GraphiQL lists them all)',
  );
  // No worker: the count says so, and so does the time to idle.
  expect(await page.locator('[data-testid="workers"]').textContent()).toBe('0');
  expect(await page.locator('[data-testid="eta"]').textContent()).toBe('no worker running');
});

it('shows the workspace webhooks with their deliveries and last error', async () => {
  server = await startTestServer({ config: { webhookAllowPrivate: true, demoTaskMs: 1 } });
  await run(server, 'mutation{upsertWorkspace(id:"default",settings:{summariesEnabled:false}){id}}');
  // Nobody listens on port 9: every attempt fails with a refused connection.
  await run(
    server,
    'mutation{createWebhook(url:"http://127.0.0.1:9/hooks",events:[QUEUE_EMPTY],secret:"a-secret-of-sixteen-plus"){id}}',
  );
  browser = await launchChromium();
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  await page.goto(server.url.replace(/\/graphql$/, '/'));
  await page.locator('#state.live').waitFor();
  await run(server, 'mutation{upsertSession(id:"chat",peers:[{peerId:"alice"}]){id}}');
  await run(
    server,
    'mutation{addMessages(sessionId:"chat",messages:[{peerId:"alice",content:"hi"}]){enqueuedTasks}}',
  );
  const row = page.locator('#webhooks tr[data-webhook]');
  await expect
    .poll(async () => (await row.count()) === 1 && (await row.locator('.error').textContent()))
    .toBe('could not reach http://127.0.0.1:9: ECONNREFUSED');
  expect(await row.locator('td').first().textContent()).toBe('http://127.0.0.1:9/hooks');
});
