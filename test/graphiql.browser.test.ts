import { existsSync } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';
import { afterEach, expect, it } from 'vitest';
import { tempDir } from './helpers.ts';
import { gate, startTestServer, type TestServer } from './server-helpers.ts';

const CHROMIUM = '/usr/bin/chromium';
let server: TestServer | undefined;
let browser: Browser | undefined;
afterEach(async () => {
  await browser?.close();
  await server?.close();
});

it('GraphiQL at /graphql runs the status subscription over WebSocket and shows live counts', async () => {
  // No skip: CI installs Debian's chromium (.ci/run); a machine without it must fail here.
  expect(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium`).toBe(true);
  const g = gate();
  server = await startTestServer({ handlers: { representation: g.handler } });
  await server.http(
    'mutation{upsertSession(id:"x",peers:[{peerId:"alice"},{peerId:"bob",observeOthers:true}]){id}}',
  );
  await server.http(
    'mutation{addMessages(sessionId:"x",messages:[{peerId:"alice",content:"hi"}]){enqueuedTasks}}',
  );

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const page = await browser.newPage();
  const sockets: { url: string; frames: number }[] = [];
  page.on('websocket', (ws) => {
    const entry = { url: ws.url(), frames: 0 };
    sockets.push(entry);
    ws.on('framereceived', () => void entry.frames++);
  });
  const subscription =
    'subscription Watch { deriverStatus(sessionId: "x", coalesceMs: 0) { totalWorkUnits pendingWorkUnits inProgressWorkUnits completedWorkUnits } }';
  await page.goto(`${server.url}?query=${encodeURIComponent(subscription)}`);
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
