/**
 * `deriver-live/react` in a real browser (Debian's chromium): a small app bundled at test time
 * with esbuild (`test/fixtures/react/app.ts`), served from its own origin, talking to a server
 * with auth on through a TCP proxy the test can cut. The counts move as tasks run, the idle badge
 * and the message tracker turn when the work is done, a session key is used, a dropped
 * connection comes back and the hooks carry on, and a page without a key shows the refusal.
 */
import { createServer as createHttpServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect, createServer as createTcpServer, type Socket, type Server as TcpServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createKeyring } from '../src/auth/keyring.ts';
import { gate, startTestServer, type TestServer } from './server-helpers.ts';
import { launchChromium } from './support/browser.ts';
import { send } from './transports.ts';

const SECRET = 'a-jwt-secret-for-the-react-browser-test';
const APP = fileURLToPath(new URL('./fixtures/react/app.ts', import.meta.url));
const held = gate();
let server: TestServer;
let site: Server;
let proxy: Awaited<ReturnType<typeof startProxy>>;
let browser: Browser;
let admin: string;
const keys = createKeyring({ secret: SECRET });

const listen = (s: Server | TcpServer) =>
  new Promise<number>((resolve) =>
    s.listen(0, '127.0.0.1', () => resolve((s.address() as AddressInfo).port)),
  );

/** A TCP proxy to `port` that the test can cut (every socket now) and hold shut (refuse new ones). */
async function startProxy(port: number) {
  const sockets = new Set<Socket>();
  let refusing = false;
  const tcp = createTcpServer((client) => {
    if (refusing) return client.destroy();
    const upstream = connect(port, '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {});
    }
    client.pipe(upstream).pipe(client);
  });
  const proxyPort = await listen(tcp);
  return {
    port: proxyPort,
    cut() {
      refusing = true;
      for (const socket of sockets) socket.destroy();
    },
    reopen() {
      refusing = false;
    },
    close: () => new Promise<void>((resolve) => tcp.close(() => resolve())),
  };
}

/** Serves the bundled app at `/?session=...&token=...`, its GraphQL URL through the proxy. */
async function startSite(bundle: string) {
  const http = createHttpServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    if (url.pathname === '/app.js') {
      response.writeHead(200, { 'content-type': 'text/javascript' }).end(bundle);
      return;
    }
    const settings = {
      url: `http://127.0.0.1:${proxy.port}/graphql`,
      sessionId: url.searchParams.get('session'),
      token: url.searchParams.get('token') ?? undefined,
    };
    response.writeHead(200, { 'content-type': 'text/html' }).end(
      `<!doctype html><div id="root"></div>
       <script>window.DERIVER_TEST = ${JSON.stringify(settings)};</script>
       <script type="module" src="/app.js"></script>`,
    );
  });
  await listen(http);
  return http;
}

const text = (page: Page, id: string) => page.locator(`[data-testid="${id}"]`);

async function graphql(query: string) {
  const outcome = await send('http', server.url, { query, token: admin });
  expect(outcome.code, query).toBe('OK');
  return outcome.data as Record<string, unknown>;
}

beforeAll(async () => {
  const bundled = await build({
    entryPoints: [APP],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'silent',
  });
  site = await startSite(bundled.outputFiles[0]!.text);
  const origin = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
  server = await startTestServer({
    config: { authJwtSecret: SECRET, allowedOrigins: [origin], workerConcurrency: 2 },
    handlers: { representation: held.handler, summary: held.handler },
  });
  proxy = await startProxy(Number(new URL(server.url).port));
  admin = await keys.mint({ kind: 'admin' }, null);
  browser = await launchChromium();
});
afterAll(async () => {
  held.open();
  await browser?.close();
  await proxy?.close();
  await server?.close();
  await new Promise<void>((resolve) => (site ? site.close(() => resolve()) : resolve()));
});

it('counts move as tasks run, idle and messages turn done, a dropped connection recovers', async () => {
  await graphql('mutation{upsertWorkspace(id:"default",settings:{summariesEnabled:false}){id}}');
  await graphql('mutation{upsertSession(id:"react",peers:[{peerId:"alice"}]){id}}');
  const added = await graphql(
    'mutation{addMessages(sessionId:"react",messages:[{peerId:"alice",content:"a"},{peerId:"alice",content:"b"},{peerId:"alice",content:"c"}]){messages{id}}}',
  );
  const ids = (added.addMessages as { messages: { id: string }[] }).messages.map((m) => m.id);
  const token = await keys.mint({ kind: 'session', workspaceId: 'default', sessionId: 'react' }, null);
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(`http://127.0.0.1:${siteAddress()}/?session=react&token=${encodeURIComponent(token)}`);
  await page.evaluate((messageIds) => window.trackMessages?.(messageIds), ids);

  // One task runs (one unit, in order), the others wait; nothing is idle or done yet.
  await expect.poll(() => text(page, 'connection').textContent()).toBe('connected');
  await expect.poll(() => text(page, 'total').textContent()).toBe('3');
  await expect.poll(() => text(page, 'running').textContent()).toBe('1');
  expect(await text(page, 'completed').textContent()).toBe('0');
  expect(await text(page, 'idle').textContent()).toBe('busy');
  await expect.poll(() => text(page, 'messages').textContent()).toBe('0/3');
  expect(await text(page, 'shared-connection').textContent()).toBe('connected');

  held.open();
  await expect.poll(() => text(page, 'completed').textContent()).toBe('3');
  await expect.poll(() => text(page, 'idle').textContent()).toBe('idle');
  await expect.poll(() => text(page, 'messages').textContent()).toBe('3/3 done');

  // The connection drops and stays down for a while: the page says so, then comes back.
  proxy.cut();
  await expect.poll(() => text(page, 'connection').textContent()).toBe('reconnecting');
  await graphql(
    'mutation{addMessages(sessionId:"react",messages:[{peerId:"alice",content:"d"},{peerId:"alice",content:"e"}]){enqueuedTasks}}',
  );
  proxy.reopen();
  await expect.poll(() => text(page, 'connection').textContent(), { timeout: 15_000 }).toBe('connected');
  // The status hook re-subscribed: it shows what happened while it was away, and what follows.
  await expect.poll(() => text(page, 'total').textContent()).toBe('5');
  await expect.poll(() => text(page, 'completed').textContent()).toBe('5');
  expect(await text(page, 'error').textContent()).toBe('');
  expect(errors).toEqual([]);
});

it('a page without a key shows the refusal and stops trying', async () => {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${siteAddress()}/?session=react`);
  await expect.poll(() => text(page, 'error').textContent()).toMatch(/^UNAUTHENTICATED: /);
  await expect.poll(() => text(page, 'connection').textContent()).toBe('closed');
});

function siteAddress(): number {
  return (site.address() as AddressInfo).port;
}
