import type { Socket } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import WebSocket from 'ws';
import { isIdle } from '../src/status/counts.ts';
import { sendMessages, unexpectedSummary } from './helpers.ts';
import { startTestServer, type TestServer } from './server-helpers.ts';

let server: TestServer | undefined;
let socket: WebSocket | undefined;
afterEach(async () => {
  socket?.terminate();
  await server?.close();
});

const SESSIONS = 200;
const PER_SESSION = 500; // 100,000 tasks

it('a client that stops reading keeps server memory bounded and gets the latest state when it reads again', async () => {
  server = await startTestServer({
    config: { workerConcurrency: 8 },
    handlers: { representation: () => {}, summary: unexpectedSummary },
  });
  const { app } = server;
  await app.deriver.upsertWorkspace({ id: 'default', settings: { summariesEnabled: false } });
  for (let s = 0; s < SESSIONS; s++)
    await app.deriver.upsertSession({ id: `s${s}`, peers: [{ peerId: `p${s}` }] });
  // One task per session first, so every event carries all 200 sessions (events of one size: how
  // many fit in the kernel's socket buffers does not depend on when they are sent).
  for (let s = 0; s < SESSIONS; s++)
    await sendMessages(app.deriver, { sessionId: `s${s}`, peerId: `p${s}`, count: 1 });
  await expect.poll(async () => isIdle(await app.status.get({ workspaceId: 'default' }))).toBe(true);

  // A raw graphql-transport-ws client subscribed to every change, with a large payload (breakdown).
  socket = new WebSocket(server.url.replace('http', 'ws'), 'graphql-transport-ws');
  const received: { deriverStatus: Record<string, unknown> & { completedWorkUnits: number } }[] = [];
  let acked!: () => void;
  const ack = new Promise<void>((resolve) => {
    acked = resolve;
  });
  socket.on('message', (raw) => {
    const message = JSON.parse(String(raw));
    if (message.type === 'connection_ack') acked();
    if (message.type === 'next') received.push(message.payload.data);
  });
  await new Promise((resolve) => socket!.once('open', resolve));
  socket.send(JSON.stringify({ type: 'connection_init' }));
  await ack;
  socket.send(
    JSON.stringify({
      id: '1',
      type: 'subscribe',
      payload: {
        query:
          'subscription { deriverStatus(coalesceMs: 0) { totalWorkUnits completedWorkUnits inProgressWorkUnits pendingWorkUnits sessions { sessionId totalWorkUnits completedWorkUnits inProgressWorkUnits pendingWorkUnits } } }',
      },
    }),
  );
  await expect.poll(() => received.length).toBe(1);

  // Stop reading: the client's TCP socket is paused, so the server's writes back up.
  (socket as unknown as { _socket: Socket })._socket.pause();
  let changes = 0;
  app.status.events.on('status:changed', () => void changes++);
  let maxBuffered = 0;
  let maxHeld = 0;
  const sample = () => {
    for (const client of app.server.webSockets) maxBuffered = Math.max(maxBuffered, client.bufferedAmount);
    maxHeld = Math.max(maxHeld, app.live.stats().held);
  };
  const sampler = setInterval(sample, 5);
  app.status.events.on('status:changed', sample);

  const watched = await app.status.watch({ workspaceId: 'default' });
  const idle = new Promise<void>((resolve) => {
    const off = app.status.events.on('status:changed', () => {
      const all = watched.counts();
      if (all.totalWorkUnits === SESSIONS * PER_SESSION && isIdle(all)) {
        off();
        resolve();
      }
    });
  });
  for (let s = 0; s < SESSIONS; s++)
    await sendMessages(app.deriver, { sessionId: `s${s}`, peerId: `p${s}`, count: PER_SESSION - 1 });
  await idle;
  clearInterval(sampler);
  const finalStatus = await server.http<{ deriverStatus: { completedWorkUnits: number } }>(
    '{ deriverStatus { totalWorkUnits completedWorkUnits inProgressWorkUnits pendingWorkUnits sessions { sessionId totalWorkUnits completedWorkUnits inProgressWorkUnits pendingWorkUnits } } }',
  );
  expect(finalStatus.data?.deriverStatus.completedWorkUnits).toBe(100_000);

  // Read again: what was already in the kernel's buffers arrives, then the latest state.
  (socket as unknown as { _socket: Socket })._socket.resume();
  await expect
    .poll(() => received.at(-1)?.deriverStatus.completedWorkUnits, { timeout: 20_000 })
    .toBe(100_000);
  expect(received.at(-1)).toEqual(finalStatus.data);

  const eventBytes = JSON.stringify(finalStatus.data).length;
  // The server never queued more than about one event in user space for this socket...
  expect(maxBuffered).toBeLessThanOrEqual(4 * eventBytes);
  // ...and did not keep one event per change: far fewer were delivered than changes happened.
  expect(changes).toBeGreaterThan(1_000);
  expect(received.length).toBeLessThan(changes / 4);
  // While the client was not reading, the live layer held at most one undelivered view for it
  // (an unbounded queue would have held one per change), counted at every change.
  expect(maxHeld).toBeLessThanOrEqual(1);
});
