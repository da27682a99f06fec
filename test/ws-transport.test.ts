/**
 * The server's graphql-ws adapter on `ws` sockets: keep-alive drops a peer that stops answering
 * pings and keeps one that answers; a client's protocol mistakes close its socket (4400 for a
 * message only a server sends, 1009 for a frame over the limit), never with 4500.
 */
import { afterEach, expect, it } from 'vitest';
import WebSocket from 'ws';
import { DEFAULT_SERVER_LIMITS } from '../src/server/server-limits.ts';
import { startTestServer, type TestServer } from './server-helpers.ts';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** A raw graphql-transport-ws socket, acknowledged; its messages are collected. */
async function openSocket(url: string, options: WebSocket.ClientOptions = {}) {
  const socket = new WebSocket(url.replace('http', 'ws'), 'graphql-transport-ws', options);
  const messages: { type: string; id?: string; payload?: unknown }[] = [];
  socket.on('message', (data) => messages.push(JSON.parse(String(data))));
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    socket.once('close', (code, reason) => resolve({ code, reason: String(reason) })),
  );
  await new Promise((resolve) => socket.once('open', resolve));
  socket.send(JSON.stringify({ type: 'connection_init' }));
  await expect.poll(() => messages.some((m) => m.type === 'connection_ack')).toBe(true);
  return { socket, messages, closed };
}

/** The socket still answers a query, and is then closed by the client. */
async function expectAnswers(open: Awaited<ReturnType<typeof openSocket>>): Promise<void> {
  open.socket.send(
    JSON.stringify({
      id: 'q',
      type: 'subscribe',
      payload: { query: '{ deriverStatus { totalWorkUnits } }' },
    }),
  );
  await expect.poll(() => open.messages.find((m) => m.id === 'q' && m.type === 'next')).toBeTruthy();
  open.socket.close();
}

it('keep-alive terminates a peer that stops answering pings and keeps one that answers', async () => {
  server = await startTestServer({ server: { keepAliveMs: 50 } });
  const silent = await openSocket(server.url, { autoPong: false });
  const alive = await openSocket(server.url);
  const { code } = await silent.closed;
  expect(code).toBe(1006); // terminated: no closing handshake
  expect(alive.socket.readyState).toBe(WebSocket.OPEN);
  // The live one still works after several intervals (it answered three more pings).
  await new Promise<void>((resolve) => {
    let pings = 0;
    alive.socket.on('ping', () => {
      if (++pings === 3) resolve();
    });
  });
  expect(alive.socket.readyState).toBe(WebSocket.OPEN);
  await expectAnswers(alive);
});

it('closes a socket that sends a server-only message with 4400, and one that sends garbage too', async () => {
  server = await startTestServer();
  for (const message of [
    { type: 'next', id: '1', payload: {} },
    { type: 'connection_ack' },
    { type: 'error', id: '1', payload: [] },
  ]) {
    const { socket, closed } = await openSocket(server.url);
    socket.send(JSON.stringify(message));
    const { code, reason } = await closed;
    expect(code, message.type).toBe(4400);
    expect(reason).toContain(`"${message.type}" is sent by servers only`);
  }
  const { socket, closed } = await openSocket(server.url);
  socket.send('{not json');
  expect((await closed).code).toBe(4400);
});

it('a frame over the size limit closes only that socket, with 1009, and the server goes on', async () => {
  server = await startTestServer({
    config: { limits: { ...DEFAULT_SERVER_LIMITS, wsMaxPayloadBytes: 1_000 } },
  });
  const big = await openSocket(server.url);
  const other = await openSocket(server.url);
  big.socket.send('x'.repeat(2_000));
  expect((await big.closed).code).toBe(1009);
  await expectAnswers(other);
});

it('closes a socket that does not send connection_init in time with 4408, and keeps one that did', async () => {
  server = await startTestServer({ server: { connectionInitTimeoutMs: 100 } });
  const url = server.url.replace('http', 'ws');
  const silent = new WebSocket(url, 'graphql-transport-ws');
  const closed = new Promise<number>((resolve) => silent.once('close', (code) => resolve(code)));
  const initialised = await openSocket(server.url);
  expect(await closed).toBe(4408);
  // A socket opened after the initialised one is closed after its timeout: by then the initialised
  // one's timeout has passed too, and it is still open.
  const later = new WebSocket(url, 'graphql-transport-ws');
  expect(await new Promise<number>((resolve) => later.once('close', (code) => resolve(code)))).toBe(4408);
  expect(initialised.socket.readyState).toBe(WebSocket.OPEN);
  initialised.socket.close();
});
