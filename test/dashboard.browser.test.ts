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
    const done = Number(document.querySelector('[data-testid="completed"]')?.textContent);
    return done > 0 && done < 60;
  });
  const partWay = await number(page, 'completed');
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: `${SHOTS}dashboard-running.png`, fullPage: true });
  expect(await number(page, 'total')).toBe(60);
  await page.locator('tr[data-session="support-42"]').waitFor();
  await page.waitForFunction(() => document.querySelector('[data-testid="completed"]')?.textContent === '60');
  expect(partWay).toBeGreaterThan(0);
  expect(await number(page, 'failed')).toBe(4);
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
  await page.waitForFunction(() => document.querySelector('[data-testid="completed"]')?.textContent === '60');
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
