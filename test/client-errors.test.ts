/**
 * The typed client as a newcomer meets it: every failure is a `DeriverClientError` with a code and a
 * sentence (a typo'd session, a refused key over HTTP and WebSocket, a server that is down, a URL
 * without `/graphql`), a `Bearer `-prefixed token works, and a default workspace applies to every
 * call. Real servers on port 0, the real client.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createKeyring } from '../src/auth/keyring.ts';
import { createDeriverClient, type DeriverClient, DeriverClientError } from '../src/client/index.ts';
import { startTestServer, type TestServer } from './server-helpers.ts';
import { freePort } from './support/processes.ts';

const SECRET = 'client-errors-secret-0123456789-abcdef';
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function server(config: Parameters<typeof startTestServer>[0] = {}): Promise<TestServer> {
  const started = await startTestServer(config);
  cleanups.push(() => started.close());
  return started;
}

function client(options: Parameters<typeof createDeriverClient>[0]): DeriverClient {
  const made = createDeriverClient(options);
  cleanups.push(() => made.close());
  return made;
}

const failure = (promise: Promise<unknown>) =>
  promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: unknown) => error as DeriverClientError,
  );

/** A URL where nothing listens. */
const deadUrl = async () => `http://127.0.0.1:${await freePort()}/graphql`;

describe('a filter naming what does not exist', () => {
  it('answers zeros to a query, but waitForIdle rejects with NOT_FOUND naming the id and the argument', async () => {
    const { url } = await server();
    const c = client({ url });
    await c.upsertSession({ id: 'py', peers: [{ peerId: 'alice' }] });
    expect((await c.getDeriverStatus({ sessionId: 'pyy' })).totalWorkUnits).toBe(0);
    const typo = await failure(c.waitForIdle({ sessionId: 'pyy' }));
    expect(typo).toBeInstanceOf(DeriverClientError);
    expect(typo).toMatchObject({ code: 'NOT_FOUND', message: 'session "pyy" does not exist' });
    expect(typo.argumentPath).toEqual(['sessionId']);
    expect(await failure(c.session('nope').waitForIdle())).toMatchObject({ code: 'NOT_FOUND' });
    const ghost = await failure(c.waitForIdle({ sessionId: 'py', observerId: 'alicee' }));
    expect(ghost).toMatchObject({ code: 'NOT_FOUND', message: 'peer "alicee" does not exist' });
    expect(ghost.argumentPath).toEqual(['observerId']);
    expect((await c.waitForIdle({ sessionId: 'py', senderId: 'alice' })).totalWorkUnits).toBe(0);
  });
});

describe('keys', () => {
  it('a refused or expired key rejects with UNAUTHENTICATED over HTTP and over the WebSocket, with the reason as message', async () => {
    const { url } = await server({ config: { authJwtSecret: SECRET } });
    const wrong = client({ url, token: 'not-a-key' });
    const overHttp = await failure(wrong.getDeriverStatus());
    expect(overHttp).toBeInstanceOf(DeriverClientError);
    expect(overHttp.code).toBe('UNAUTHENTICATED');
    const overWs = await failure(wrong.waitForIdle());
    expect(overWs).toBeInstanceOf(DeriverClientError);
    expect(overWs.code).toBe('UNAUTHENTICATED');
    expect(overWs.message).toMatch(/key/);
    const expired = await createKeyring({ secret: SECRET, clock: () => Date.now() - 7_200_000 }).mint(
      { kind: 'admin' },
      Date.now() - 3_600_000,
    );
    const old = client({ url, token: expired });
    expect(await failure(old.waitForIdle())).toMatchObject({
      code: 'UNAUTHENTICATED',
      message: expect.stringMatching(/expired/),
    });
  });

  it('a token given with its "Bearer " prefix works on both transports', async () => {
    const { url } = await server({ config: { authJwtSecret: SECRET } });
    const key = await createKeyring({ secret: SECRET }).mint({ kind: 'admin' }, null);
    const c = client({ url, token: `Bearer ${key}` });
    expect((await c.getDeriverStatus()).totalWorkUnits).toBe(0);
    expect((await c.waitForIdle()).totalWorkUnits).toBe(0);
    // Sent by hand with the prefix twice, the server says what is wrong with the header.
    const raw = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer Bearer ${key}` },
      body: JSON.stringify({ query: '{deriverStatus{totalWorkUnits}}' }),
    });
    expect(raw.status).toBe(401);
    expect(JSON.stringify(await raw.json())).toContain('the Authorization header must be \\"Bearer <key>\\"');
  });
});

describe('transport failures', () => {
  it('a server that is down: NETWORK, saying where, with the cause', async () => {
    const url = await deadUrl();
    const c = client({ url });
    const overHttp = await failure(c.getDeriverStatus());
    expect(overHttp).toBeInstanceOf(DeriverClientError);
    expect(overHttp.code).toBe('NETWORK');
    expect(overHttp.message).toContain(`could not reach the server at ${url}`);
    expect(overHttp.cause).toBeInstanceOf(TypeError);
    const overWs = await failure(c.waitForIdle());
    expect(overWs).toBeInstanceOf(DeriverClientError);
    expect(overWs.code).toBe('NETWORK');
  }, 60_000);

  it('a URL without /graphql: the error says where the endpoint is', async () => {
    const { url } = await server();
    const root = url.replace(/\/graphql$/, '');
    const c = client({ url: root });
    // The server answers a path it does not serve with a sentence saying where the API is.
    const overHttp = await failure(c.getDeriverStatus());
    expect(overHttp.code).toBe('NOT_FOUND');
    expect(overHttp.message).toContain('the GraphQL API is at /graphql');
    const overWs = await failure(c.waitForIdle());
    expect(overWs.code).toBe('NETWORK');
    expect(overWs.message).toContain(`the GraphQL endpoint is ${root}/graphql`);
  }, 60_000);
});

describe('a default workspace', () => {
  it('createDeriverClient({ workspaceId }) applies it to every call that names none', async () => {
    const { url } = await server({ config: { demoTaskMs: 1 } });
    const acme = client({ url, workspaceId: 'acme' });
    await acme.upsertSession({ id: 's', peers: [{ peerId: 'a' }] });
    await acme.session('s').addMessages([{ peerId: 'a', content: 'hello' }]);
    expect((await acme.waitForIdle({ sessionId: 's' })).completedWorkUnits).toBe(1);
    expect((await acme.getSession('s'))?.id).toBe('s');
    const plain = client({ url });
    expect(await plain.getSession('s')).toBeNull();
    expect((await plain.getDeriverStatus({ workspaceId: 'acme' })).completedWorkUnits).toBe(1);
    expect((await plain.getDeriverStatus()).totalWorkUnits).toBe(0);
  });
});
