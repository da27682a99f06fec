import type { Browser, Page } from 'playwright-core';
import { afterEach, expect, it } from 'vitest';
import { tempDir, unexpectedSummary } from './helpers.ts';
import { gate, startTestServer, type TestServer } from './server-helpers.ts';
import { launchChromium } from './support/browser.ts';
import { send } from './transports.ts';

let server: TestServer | undefined;
let browser: Browser | undefined;
afterEach(async () => {
  await browser?.close();
  await server?.close();
});

const SUBSCRIPTION =
  'subscription Watch { deriverStatus(sessionId: "x", coalesceMs: 0) { totalWorkUnits pendingWorkUnits inProgressWorkUnits completedWorkUnits } }';

async function seed(s: TestServer, token?: string) {
  for (const query of [
    'mutation{upsertSession(id:"x",peers:[{peerId:"alice"},{peerId:"bob",observeOthers:true}]){id}}',
    'mutation{addMessages(sessionId:"x",messages:[{peerId:"alice",content:"hi"}]){enqueuedTasks}}',
  ]) {
    expect((await send('http', s.url, { query, token })).code).toBe('OK');
  }
}

it('GraphiQL at /graphql runs the status subscription over WebSocket and shows live counts', async () => {
  const g = gate();
  server = await startTestServer({ handlers: { representation: g.handler, summary: unexpectedSummary } });
  await seed(server);
  browser = await launchChromium();
  const page = await browser.newPage();
  const sockets: { url: string; frames: number }[] = [];
  page.on('websocket', (ws) => {
    const entry = { url: ws.url(), frames: 0 };
    sockets.push(entry);
    ws.on('framereceived', () => void entry.frames++);
  });
  await page.goto(`${server.url}?query=${encodeURIComponent(SUBSCRIPTION)}`);
  await page.locator('.graphiql-execute-button').click();
  const result = page.locator('.result-window');
  // The result pane is a Monaco editor: it renders spaces as no-break spaces. innerText is what a
  // person sees (textContent would include hidden editor text).
  // biome-ignore lint/performance/useDomNodeTextContent: the rendered text is the point
  const shown = async () => (await result.innerText()).replace(/\s+/g, ' ');
  await expect.poll(shown, { timeout: 15_000 }).toMatch(/"totalWorkUnits": 2/);
  expect(await shown()).toMatch(/"completedWorkUnits": 0/);
  g.open();
  await expect.poll(shown, { timeout: 15_000 }).toMatch(/"completedWorkUnits": 2/);
  // The counts were pushed over a graphql-ws WebSocket on the same path.
  expect(sockets.map((s) => new URL(s.url).pathname)).toContain('/graphql');
  expect(Math.max(...sockets.map((s) => s.frames))).toBeGreaterThanOrEqual(3);
  const screenshot = tempDir();
  await page.screenshot({ path: screenshot.path('graphiql.png') });
  if (process.env.KEEP_SCREENSHOT) await page.screenshot({ path: process.env.KEEP_SCREENSHOT });
  screenshot.remove();
});

it('with auth on, GraphiQL sends the key from its Headers tab and the subscription shows live counts', async () => {
  const secret = 'graphiql-secret-that-is-32-bytes-long!';
  const g = gate();
  server = await startTestServer({
    handlers: { representation: g.handler, summary: unexpectedSummary },
    config: { authJwtSecret: secret },
  });
  const { SignJWT } = await import('jose');
  const token = await new SignJWT({ w: 'default' })
    .setProtectedHeader({ alg: 'HS256' })
    .sign(new TextEncoder().encode(secret));
  await seed(server, token);
  browser = await launchChromium();
  const page = await browser.newPage();
  await page.goto(`${server.url}?query=${encodeURIComponent(SUBSCRIPTION)}`);
  await page.getByRole('button', { name: 'Headers' }).click();
  await page.locator('.graphiql-editor-tool .graphiql-editor').last().click();
  await page.keyboard.insertText(JSON.stringify({ Authorization: `Bearer ${token}` }));
  await page.locator('.graphiql-execute-button').click();
  const result = page.locator('.result-window');
  // biome-ignore lint/performance/useDomNodeTextContent: the rendered text is the point
  const shown = async () => (await result.innerText()).replace(/\s+/g, ' ');
  await expect.poll(shown, { timeout: 15_000 }).toMatch(/"totalWorkUnits": 2/);
  g.open();
  await expect.poll(shown, { timeout: 15_000 }).toMatch(/"completedWorkUnits": 2/);
  expect(await shown()).not.toMatch(/UNAUTHENTICATED/);
});

it('the walkthrough as written, in two browser tabs: Setup and Watch in the first, Chat in a second; the first shows the counts move', async () => {
  server = await startTestServer();
  browser = await launchChromium();
  const context = await browser.newContext();
  /** Picks `name` from the run button's menu, as step 1 says. */
  const run = async (page: Page, name: string) => {
    await page.locator('.graphiql-execute-button').click();
    await page.getByRole('menuitem', { name }).click();
  };
  // biome-ignore lint/performance/useDomNodeTextContent: the rendered text is the point
  const shown = async (page: Page) => (await page.locator('.result-window').innerText()).replace(/\s+/g, ' ');
  const first = await context.newPage();
  await first.goto(server.url);
  await run(first, 'Setup');
  await expect.poll(() => shown(first), { timeout: 15_000 }).toMatch(/"upsertSession"/);
  await run(first, 'Watch');
  await expect.poll(() => shown(first), { timeout: 15_000 }).toMatch(/"totalWorkUnits": 0/);

  const second = await context.newPage();
  await second.goto(server.url);
  // It opens on the walkthrough (not an empty tab), and Chat runs there.
  expect(await second.locator('.graphiql-tab').allInnerTexts()).toEqual(['Setup']);
  await run(second, 'Chat');
  await expect.poll(() => shown(second), { timeout: 15_000 }).toMatch(/"enqueuedTasks": 54/);

  await expect.poll(() => shown(first), { timeout: 30_000 }).toMatch(/"totalWorkUnits": 54/);
  await expect.poll(() => shown(first), { timeout: 60_000 }).toMatch(/"completedWorkUnits": 54/);
  await context.close();
}, 120_000);
