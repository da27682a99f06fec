/** Bounded resources: every limit is configurable and refuses exactly what is over it, cleanly. */
import { createClient } from 'graphql-ws';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import {
  DEFAULT_SERVER_LIMITS,
  LARGEST_VALID_BODY_BYTES,
  type ServerLimits,
} from '../src/server/server-limits.ts';
import { startTestServer, type TestServer } from './server-helpers.ts';
import { send } from './transports.ts';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function start(limits: Partial<ServerLimits> = {}, config: Parameters<typeof startTestServer>[0] = {}) {
  server = await startTestServer({
    ...config,
    config: { ...config.config, limits: { ...DEFAULT_SERVER_LIMITS, ...limits } },
  });
  return server;
}

const post = (url: string, body: BodyInit, headers: Record<string, string> = {}) =>
  fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
    duplex: 'half',
  } as RequestInit);

/** A body stream that sends `chunks` and then waits for `release` before ending. */
function heldBody(chunks: Uint8Array[], held: Promise<void>): ReadableStream<Uint8Array> {
  return new ReadableStream({
    async start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      await held;
      controller.close();
    },
  });
}

describe('request bodies', () => {
  it('answers invalid JSON with a short BAD_REQUEST that does not echo the body', async () => {
    const { url } = await start();
    const response = await post(url, `{"query": "${'A'.repeat(1_000_000)}`);
    const text = await response.text();
    expect(response.status).toBe(400);
    expect(text.length).toBeLessThan(300);
    expect(text).not.toContain('AAAA');
    expect(JSON.parse(text).errors[0].extensions.code).toBe('BAD_REQUEST');
    const binary = await post(url, new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]));
    expect(await binary.json()).toMatchObject({
      errors: [{ message: 'the request body is not valid UTF-8' }],
    });
  });

  it('bounds bodies of every other content type the same way, and still parses them', async () => {
    const { url } = await start({ maxBodyBytes: 2_000 });
    // A GraphQL string body (Yoga's parser for it runs on what the limit read).
    const graphql = { 'content-type': 'application/graphql', 'x-graphql-yoga-csrf': '1' };
    const small = await post(url, '{ __typename }', graphql);
    expect(await small.json()).toEqual({ data: { __typename: 'Query' } });
    const big = `{ __typename } ${'#'.repeat(3_000)}`;
    const declared = await post(url, big, graphql);
    expect(declared.status).toBe(413);
    const chunked = await post(url, heldBody([new TextEncoder().encode(big)], Promise.resolve()), graphql);
    expect(chunked.status).toBe(413);
    expect((await chunked.json()).errors[0]).toMatchObject({
      message: "the request body is larger than 2000 bytes (the server's MAX_BODY_BYTES)",
      extensions: { code: 'REQUEST_ENTITY_TOO_LARGE' },
    });
    // A form body, parsed by Yoga after the limit read it.
    const form = { 'content-type': 'application/x-www-form-urlencoded', 'x-graphql-yoga-csrf': '1' };
    const viaForm = await post(url, `query=${encodeURIComponent('{ __typename }')}`, form);
    expect(await viaForm.json()).toEqual({ data: { __typename: 'Query' } });
  });

  it('refuses a body over the limit with 413, by Content-Length and while reading a chunked one', async () => {
    const { url } = await start({ maxBodyBytes: 2_000 });
    const big = JSON.stringify({ query: `{__typename} ${'#'.repeat(3_000)}` });
    const declared = await post(url, big);
    expect(declared.status).toBe(413);
    expect((await declared.json()).errors[0].extensions.code).toBe('REQUEST_ENTITY_TOO_LARGE');
    const chunked = await post(url, heldBody([new TextEncoder().encode(big)], Promise.resolve()));
    expect(chunked.status).toBe(413);
    expect((await chunked.json()).errors[0].extensions.code).toBe('REQUEST_ENTITY_TOO_LARGE');
    expect((await send('http', url, { query: '{__typename}' })).code).toBe('OK');
  });

  it('accepts the largest valid addMessages however its characters are written, under the default limit', async () => {
    const { url } = await start({ mutationsPerSecond: 0 });
    await send('http', url, { query: 'mutation{upsertSession(id:"big",peers:[{peerId:"a"}]){id}}' });
    // Control characters are the longest to write in JSON (6 bytes each: \u0001).
    const messages = Array.from({ length: 100 }, () => ({ peerId: 'a', content: '\u0001'.repeat(65_535) }));
    const body = JSON.stringify({
      query: 'mutation($m:[MessageInput!]!){addMessages(sessionId:"big",messages:$m){enqueuedTasks}}',
      variables: { m: messages },
    });
    expect(Buffer.byteLength(body)).toBeGreaterThan(39_000_000);
    expect(Buffer.byteLength(body)).toBeLessThanOrEqual(LARGEST_VALID_BODY_BYTES);
    const response = await post(url, body);
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ data: { addMessages: { enqueuedTasks: 105 } } }); // 100 + 5 summaries
  });

  it('refuses bodies over the in-flight budget with 429 RATE_LIMITED and a retry hint', async () => {
    const { url } = await start({ maxInflightBodyBytes: 10_000 });
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const chunk = new TextEncoder().encode(
      `{"query":"{__typename}","extensions":{"pad":"${'x'.repeat(8_000)}`,
    );
    const first = post(
      url,
      heldBody(
        [chunk],
        held.then(() => undefined),
      ),
    );
    // Until the first body's bytes are in, a second body fits the budget (and is answered 400:
    // its JSON never closes); once they are, it is refused. Wait for that state, not for a time.
    let second = await post(url, heldBody([chunk], Promise.resolve()));
    while (second.status === 400) second = await post(url, heldBody([chunk], Promise.resolve()));
    expect(second.status).toBe(429);
    expect(second.headers.get('retry-after')).toBe('1');
    expect((await second.json()).errors[0].extensions).toMatchObject({
      code: 'RATE_LIMITED',
      retryAfterSeconds: 1,
    });
    release();
    expect((await first).status).toBe(400); // its JSON never closed: bad, but read within bounds
    expect((await send('http', url, { query: '{__typename}' })).code).toBe('OK');
  });

  it("Honcho's routes share the budget: bodies held in flight on one refuse the next, on any route, with 429", async () => {
    const { url } = await start({ maxInflightBodyBytes: 20_000, maxBodyBytes: 12_000 });
    const rest = new URL('/v3/workspaces/w/sessions/s/messages', url).toString();
    const releases: (() => void)[] = [];
    const chunk = new TextEncoder().encode(`{"messages":[{"peer_id":"a","content":"${'x'.repeat(8_000)}`);
    /** A REST body whose first 8 KB are sent and the rest held until released. */
    const hold = () => post(rest, heldBody([chunk], new Promise<void>((resolve) => releases.push(resolve))));
    const held = [hold()];
    // Until the held bodies' bytes are in, another body fits (and is answered 422: its JSON never
    // closes); once they are, one more is refused. Wait for that state, not for a time.
    let refused = await post(rest, heldBody([chunk], Promise.resolve()));
    while (refused.status === 422) {
      held.push(hold());
      refused = await post(rest, heldBody([chunk], Promise.resolve()));
    }
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(((await refused.json()) as { detail: string }).detail).toMatch(/too many large requests/);
    // The same budget: /graphql is refused too while the REST bodies are held.
    const graphql = await post(url, heldBody([chunk], Promise.resolve()));
    expect(graphql.status).toBe(429);
    // One REST body over the per-request limit: 413, as on /graphql.
    const tooLarge = await fetch(rest, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ peer_id: 'a', content: 'y'.repeat(13_000) }] }),
    });
    expect(tooLarge.status).toBe(413);
    for (const release of releases) release();
    for (const response of await Promise.all(held)) expect(response.status).toBe(422);
    const after = await fetch(rest, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ peer_id: 'a', content: 'fits again' }] }),
    });
    expect(after.status).toBe(201);
  });
});

describe('WebSocket', () => {
  it('closes a socket that sends a frame over the limit with 1009', async () => {
    const { url } = await start({ wsMaxPayloadBytes: 4_096 });
    const socket = new WebSocket(url.replace(/^http/, 'ws'), 'graphql-transport-ws');
    await new Promise((resolve) => socket.once('open', resolve));
    const closed = new Promise<number>((resolve) => socket.once('close', (code) => resolve(code)));
    socket.send(JSON.stringify({ type: 'connection_init', payload: { pad: 'x'.repeat(5_000) } }));
    expect(await closed).toBe(1009);
  });

  it('caps operations per socket: one more gets an error for its id, the others keep running', async () => {
    const { url } = await start({ maxSubscriptionsPerSocket: 3 });
    const client = createClient({
      url: url.replace(/^http/, 'ws'),
      webSocketImpl: WebSocket,
      retryAttempts: 0,
    });
    const latest: number[] = [];
    const disposers: (() => void)[] = [];
    const firstEvents = Array.from({ length: 3 }, (_, i) => {
      return new Promise<void>((resolve) => {
        disposers.push(
          client.subscribe<{ deriverStatus: { totalWorkUnits: number } }>(
            { query: `subscription{deriverStatus(sessionId:"s${i}",coalesceMs:0){totalWorkUnits}}` },
            {
              next: (r) => {
                latest[i] = r.data?.deriverStatus.totalWorkUnits ?? -1;
                resolve();
              },
              error: () => {},
              complete: () => {},
            },
          ),
        );
      });
    });
    await Promise.all(firstEvents);
    const fourth = await new Promise<unknown>((resolve) => {
      client.subscribe(
        { query: 'subscription{deriverStatus{totalWorkUnits}}' },
        { next: resolve, error: resolve, complete: () => {} },
      );
    });
    expect(fourth).toEqual([
      expect.objectContaining({
        message: expect.stringMatching(/at most 3 operations/),
        extensions: { code: 'RATE_LIMITED' },
      }),
    ]);
    // The three are still live on the same socket.
    await send('http', url, { query: 'mutation{upsertSession(id:"s1",peers:[{peerId:"a"}]){id}}' });
    await send('http', url, {
      query: 'mutation{addMessages(sessionId:"s1",messages:[{peerId:"a",content:"x"}]){enqueuedTasks}}',
    });
    await expect.poll(() => latest[1]).toBe(1);
    for (const dispose of disposers) dispose();
    await client.dispose();
  });

  it('answers a subscribe over a query limit with an error for that id only', async () => {
    const { url } = await start();
    const client = createClient({
      url: url.replace(/^http/, 'ws'),
      webSocketImpl: WebSocket,
      retryAttempts: 0,
    });
    const events: number[] = [];
    const healthy = client.subscribe<{ deriverStatus: { totalWorkUnits: number } }>(
      { query: 'subscription{deriverStatus(sessionId:"q",coalesceMs:0){totalWorkUnits}}' },
      { next: (r) => events.push(r.data!.deriverStatus.totalWorkUnits), error: () => {}, complete: () => {} },
    );
    await expect.poll(() => events.length).toBe(1);
    const aliases = Array.from({ length: 30 }, (_, i) => `a${i}: totalWorkUnits`).join(' ');
    for (const query of [
      `subscription{deriverStatus{${aliases}}}`,
      `subscription{deriverStatus{${'totalWorkUnits @skip(if: false) '.repeat(60)}}}`,
      'subscription{deriverStatus{',
    ]) {
      const refused = await new Promise<unknown>((resolve) => {
        client.subscribe({ query }, { next: resolve, error: resolve, complete: () => {} });
      });
      expect(Array.isArray(refused)).toBe(true);
      expect((refused as { extensions?: { code?: string } }[])[0]?.extensions?.code).toMatch(
        /^(BAD_USER_INPUT|GRAPHQL_PARSE_FAILED|GRAPHQL_VALIDATION_FAILED)$/,
      );
    }
    await send('http', url, { query: 'mutation{upsertSession(id:"q",peers:[{peerId:"a"}]){id}}' });
    await send('http', url, {
      query: 'mutation{addMessages(sessionId:"q",messages:[{peerId:"a",content:"x"}]){enqueuedTasks}}',
    });
    await expect.poll(() => events.includes(1)).toBe(true);
    healthy();
    await client.dispose();
  });
});

describe('per client', () => {
  it('caps connections per address: one more is answered 429 and closed', async () => {
    const { url } = await start({ maxConnectionsPerAddress: 4 });
    const sockets = await Promise.all(
      Array.from({ length: 4 }, async () => {
        const socket = new WebSocket(url.replace(/^http/, 'ws'), 'graphql-transport-ws');
        await new Promise((resolve) => socket.once('open', resolve));
        return socket;
      }),
    );
    const refused = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(refused.status).toBe(429);
    expect((await refused.json()).errors[0].extensions.code).toBe('RATE_LIMITED');
    for (const socket of sockets) socket.close();
    await expect.poll(async () => (await send('http', url, { query: '{__typename}' })).code).toBe('OK');
  });

  it('limits mutations per client with RATE_LIMITED and Retry-After; queries are not counted', async () => {
    const { url } = await start({ mutationsPerSecond: 2 }); // burst 4
    const codes: string[] = [];
    for (let i = 0; i < 5; i++) {
      codes.push((await send('http', url, { query: `mutation{upsertPeer(id:"p${i}"){id}}` })).code);
    }
    expect(codes).toEqual(['OK', 'OK', 'OK', 'OK', 'RATE_LIMITED']);
    const response = await post(url, JSON.stringify({ query: 'mutation{upsertPeer(id:"late"){id}}' }));
    expect(response.status).toBe(429);
    expect(Number(response.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect((await send('http', url, { query: '{peer(id:"late"){id}}' })).data).toEqual({ peer: null });
  });

  it('a flooding client cannot starve another: its limit is its own, and the other is served and pushed to', async () => {
    const secret = 'flood-secret-that-is-at-least-32-bytes';
    const { url } = await start({ mutationsPerSecond: 5 }, { config: { authJwtSecret: secret } });
    const { SignJWT } = await import('jose');
    const key = (w: string) =>
      new SignJWT({ w }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(secret));
    const [flooder, victim] = [await key('flood'), await key('calm')];
    await send('http', url, {
      query: 'mutation{upsertSession(workspaceId:"calm",id:"c",peers:[{peerId:"a"}]){id}}',
      token: victim,
    });

    const client = createClient({
      url: url.replace(/^http/, 'ws'),
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${victim}` },
      retryAttempts: 0,
    });
    const totals: number[] = [];
    const dispose = client.subscribe<{ deriverStatus: { totalWorkUnits: number } }>(
      { query: 'subscription{deriverStatus(workspaceId:"calm",coalesceMs:0){totalWorkUnits}}' },
      { next: (r) => totals.push(r.data!.deriverStatus.totalWorkUnits), error: () => {}, complete: () => {} },
    );
    await expect.poll(() => totals.length).toBe(1);

    const flood = Array.from({ length: 200 }, (_, i) =>
      send('http', url, {
        query: `mutation{upsertPeer(workspaceId:"flood",id:"f${i}"){id}}`,
        token: flooder,
      }),
    );
    const victimWrite = send('http', url, {
      query:
        'mutation{addMessages(workspaceId:"calm",sessionId:"c",messages:[{peerId:"a",content:"hi"}]){enqueuedTasks}}',
      token: victim,
    });
    const floodCodes = (await Promise.all(flood)).map((o) => o.code);
    expect(floodCodes.filter((c) => c === 'RATE_LIMITED').length).toBeGreaterThan(150);
    expect((await victimWrite).code).toBe('OK');
    await expect.poll(() => totals.at(-1)).toBe(1);
    dispose();
    await client.dispose();
  });
});

describe('introspection and GraphiQL', () => {
  it('turns introspection and field suggestions off when asked', async () => {
    const off = await start({}, { config: { introspection: false } });
    const refused = await send('http', off.url, { query: '{__schema{queryType{name}}}' });
    expect(refused.code).not.toBe('OK');
    const typo = await send('http', off.url, { query: '{deriverStatus{totalWorkUnit}}' });
    expect(typo.message).not.toMatch(/Did you mean/);
    await off.close();
    server = undefined;
    const on = await start();
    expect((await send('http', on.url, { query: '{__schema{queryType{name}}}' })).code).toBe('OK');
    expect((await send('http', on.url, { query: '{deriverStatus{totalWorkUnit}}' })).message).toMatch(
      /Did you mean/,
    );
  });

  it('serves GraphiQL compressed, revalidated by ETag, with a budget of full sends per address', async () => {
    const { url } = await start();
    const get = (headers: Record<string, string>) =>
      fetch(url, { headers: { accept: 'text/html', ...headers } });
    const first = await get({ 'accept-encoding': 'br' });
    expect(first.status).toBe(200);
    expect(first.headers.get('content-encoding')).toBe('br');
    const compressed = Number(first.headers.get('content-length'));
    expect(compressed).toBeLessThan(3_000_000);
    expect((await first.text()).length).toBeGreaterThan(compressed); // fetch decompressed it
    const etag = first.headers.get('etag')!;
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push((await get({ 'if-none-match': etag })).status);
    expect(new Set(statuses)).toEqual(new Set([304]));
    const sends: number[] = [];
    for (let i = 0; i < 12; i++) {
      const response = await get({ 'accept-encoding': 'gzip' });
      sends.push(response.status);
      await response.arrayBuffer();
    }
    expect(sends.filter((s) => s === 200).length).toBe(9); // 10 a minute, one spent above
    expect(sends.at(-1)).toBe(429);
  });
});
