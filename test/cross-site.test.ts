/** No cross-site access: browsers' simple requests and foreign origins are refused on every transport. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startTestServer, type TestServer } from './server-helpers.ts';
import { send } from './transports.ts';

const ALLOWED = 'https://app.example.com';
let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ config: { allowedOrigins: [ALLOWED] } });
});
afterAll(() => server.close());

const MUTATION = 'mutation{upsertSession(id:"csrf"){id}}';
const sessionExists = async () =>
  ((await server.http<{ session: { id: string } | null }>('{session(id:"csrf"){id}}')).data?.session ??
    null) !== null;

/** Opens a WebSocket with an `Origin`; resolves with `open` or the refusal's HTTP status. */
function upgrade(origin: string | undefined): Promise<string> {
  return new Promise((resolve) => {
    const socket = new WebSocket(server.url.replace(/^http/, 'ws'), 'graphql-transport-ws', {
      headers: origin ? { origin } : {},
    });
    socket.on('open', () => {
      socket.close();
      resolve('open');
    });
    socket.on('unexpected-response', (_req, res) => {
      resolve(String(res.statusCode));
      socket.terminate();
    });
    socket.on('error', () => {});
  });
}

describe('simple (non-preflighted) requests do not run operations', () => {
  it.each([
    ['a form POST', 'application/x-www-form-urlencoded', `query=${encodeURIComponent(MUTATION)}`],
    ['a text POST', 'text/plain', JSON.stringify({ query: MUTATION })],
    [
      'a multipart POST',
      'multipart/form-data; boundary=x',
      `--x\r\nContent-Disposition: form-data; name="operations"\r\n\r\n${JSON.stringify({ query: MUTATION })}\r\n--x--\r\n`,
    ],
  ])('refuses %s with 403 FORBIDDEN and writes nothing', async (_name, contentType, body) => {
    const response = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': contentType },
      body,
    });
    expect(response.status).toBe(403);
    const json = (await response.json()) as { errors: { extensions: { code: string } }[] };
    expect(json.errors[0]?.extensions.code).toBe('FORBIDDEN');
    expect(await sessionExists()).toBe(false);
  });

  it('refuses a mutation over GET', async () => {
    const response = await fetch(`${server.url}?query=${encodeURIComponent(MUTATION)}`, {
      headers: { 'x-graphql-yoga-csrf': '1' },
    });
    expect(response.status).toBe(405);
    expect(await sessionExists()).toBe(false);
  });
});

describe('origins', () => {
  it('refuses a foreign Origin on HTTP, without CORS headers, and writes nothing', async () => {
    const outcome = await send('http', server.url, {
      query: MUTATION,
      headers: { origin: 'http://evil.example' },
    });
    expect(outcome).toMatchObject({ code: 'FORBIDDEN', status: 403 });
    const preflight = await fetch(server.url, {
      method: 'OPTIONS',
      headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST' },
    });
    expect(preflight.status).toBe(403);
    expect(preflight.headers.get('access-control-allow-origin')).toBeNull();
    expect(await sessionExists()).toBe(false);
  });

  it('allows its own origin and the configured one (with CORS headers for it), and requests without Origin', async () => {
    const own = new URL(server.url).origin;
    expect((await send('http', server.url, { query: '{__typename}', headers: { origin: own } })).code).toBe(
      'OK',
    );
    expect((await send('http', server.url, { query: '{__typename}' })).code).toBe('OK');
    const response = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: ALLOWED },
      body: JSON.stringify({ query: '{__typename}' }),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('access-control-allow-origin')).toBe(ALLOWED);
    const preflight = await fetch(server.url, {
      method: 'OPTIONS',
      headers: {
        origin: ALLOWED,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization,content-type',
      },
    });
    expect(preflight.status).toBeLessThan(300);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(ALLOWED);
  });

  it('checks the WebSocket Origin against the same list', async () => {
    expect(await upgrade('http://evil.example')).toBe('403');
    expect(await upgrade(new URL(server.url).origin)).toBe('open');
    expect(await upgrade(ALLOWED)).toBe('open');
    expect(await upgrade(undefined)).toBe('open');
  });
});
