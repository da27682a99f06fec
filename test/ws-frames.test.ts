/**
 * The WebSocket hot path writes `next` frames itself (one serialization per topic change): a raw
 * graphql-transport-ws client sees byte-correct frames, as graphql-ws would write them, for any
 * operation id, and a graphql-ws client sees the same events as before.
 */

import type { ExecutionResult } from 'graphql';
import { createClient } from 'graphql-ws';
import { SignJWT } from 'jose';
import { afterEach, expect, it } from 'vitest';
import WebSocket from 'ws';
import { wireFrame, writeFrames } from '../src/server/ws-frames.ts';
import { DONE, ReadyStream } from '../src/util/ready-stream.ts';
import { gate, startTestServer, type TestServer } from './server-helpers.ts';
import { send } from './transports.ts';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
});

const QUERY =
  'subscription { deriverStatus(sessionId: "s", coalesceMs: 0) { totalWorkUnits completedWorkUnits } }';

it('raw and graphql-ws clients get byte-correct next frames carrying the same events', async () => {
  const g = gate();
  server = await startTestServer({ handlers: { representation: g.handler, summary: g.handler } });
  const s = server;
  const run = async (query: string) => expect((await send('http', s.url, { query })).code).toBe('OK');
  await run('mutation{upsertSession(id:"s",peers:[{peerId:"alice"}]){id}}');

  // A raw client, with an operation id that needs escaping in JSON.
  const id = 'op "1"\\\u2028é';
  const raw = new WebSocket(s.url.replace('http', 'ws'), 'graphql-transport-ws');
  const frames: string[] = [];
  raw.on('message', (data) => frames.push(String(data)));
  await new Promise((resolve) => raw.once('open', resolve));
  raw.send(JSON.stringify({ type: 'connection_init' }));
  await expect.poll(() => frames.length).toBe(1);
  raw.send(JSON.stringify({ id, type: 'subscribe', payload: { query: QUERY } }));

  // The same subscription through graphql-ws's own client.
  const client = createClient({ url: s.url.replace('http', 'ws'), webSocketImpl: WebSocket });
  const viaClient: unknown[] = [];
  client.subscribe(
    { query: QUERY },
    { next: (r) => void viaClient.push(r), error: () => {}, complete: () => {} },
  );

  await expect.poll(() => viaClient.length).toBe(1);
  await run('mutation{addMessages(sessionId:"s",messages:[{peerId:"alice",content:"hi"}]){enqueuedTasks}}');
  g.open();
  await expect
    .poll(
      () =>
        (viaClient.at(-1) as { data: { deriverStatus: { completedWorkUnits: number } } })?.data.deriverStatus
          .completedWorkUnits,
    )
    .toBe(1);
  await expect.poll(() => frames.filter((f) => f.includes('"completedWorkUnits":1')).length).toBe(1);

  const next = frames.slice(1).filter((f) => JSON.parse(f).type === 'next');
  expect(next.length).toBeGreaterThanOrEqual(2);
  for (const frame of next) {
    const message = JSON.parse(frame) as { id: string; type: string; payload: unknown };
    // Exactly what graphql-ws writes: JSON.stringify({ id, type, payload }), keys in that order.
    expect(frame).toBe(JSON.stringify({ id: message.id, type: 'next', payload: message.payload }));
    expect(message.id).toBe(id);
  }
  expect(next.map((f) => JSON.parse(f).payload)).toEqual(viaClient);
  raw.close();
  await client.dispose();
});

it('results graphql-ws still sends itself (a query over the socket, a refused subscription) carry no HTTP extensions', async () => {
  const secret = 'ws-frames-test-secret-of-32-bytes-or-more';
  server = await startTestServer({ config: { authJwtSecret: secret } });
  const key = await new SignJWT({ w: 'default', s: 'mine' })
    .setProtectedHeader({ alg: 'HS256' })
    .sign(new TextEncoder().encode(secret));
  const client = createClient({
    url: server.url.replace('http', 'ws'),
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${key}` },
  });
  const outcome = (query: string) =>
    new Promise<{ errors?: { extensions?: Record<string, unknown> }[] }>((resolve) => {
      client.subscribe(
        { query },
        {
          next: (result) => resolve(result as never),
          error: (errors) => resolve({ errors: errors as never }),
          complete: () => {},
        },
      );
    });
  for (const query of [
    '{ deriverStatus(sessionId: "other") { totalWorkUnits } }',
    'subscription { deriverStatus(sessionId: "other") { totalWorkUnits } }',
  ]) {
    const result = await outcome(query);
    expect(result.errors?.[0]?.extensions?.code, query).toBe('FORBIDDEN');
    expect(result.errors?.[0]?.extensions, query).not.toHaveProperty('http');
  }
  await client.dispose();
});

it('a frame written straight to the TCP stream is the frame ws writes, for 7, 16 and 64-bit lengths', async () => {
  // ws's framing classes (exported by ws, not declared by @types/ws).
  const { Sender, Receiver } = (await import('ws')) as unknown as {
    Sender: { frame(data: Buffer, options: Record<string, unknown>): Buffer[] };
    Receiver: new (options: {
      isServer: boolean;
    }) => NodeJS.WritableStream & {
      on(event: 'message', listener: (data: Buffer, isBinary: boolean) => void): void;
    };
  };
  const head = Buffer.from('{"id":"1","type":"next","payload":');
  for (const size of [10, 200, 70_000]) {
    const payload = Buffer.from(JSON.stringify({ data: { s: 'x'.repeat(size) } }));
    const message = Buffer.concat([head, payload, Buffer.from('}')]);
    const frame = wireFrame(head, payload);
    const ours = Sender.frame(message, { fin: true, opcode: 1, mask: false, readOnly: false, rsv1: false });
    expect(frame.equals(Buffer.concat(ours)), `size ${size}`).toBe(true);
    const received = await new Promise<string>((resolve) => {
      const receiver = new Receiver({ isServer: false });
      receiver.on('message', (data: Buffer, isBinary: boolean) => {
        expect(isBinary).toBe(false);
        resolve(String(data));
      });
      receiver.write(frame);
    });
    expect(JSON.parse(received)).toEqual({ id: '1', type: 'next', payload: JSON.parse(String(payload)) });
  }
});

it('a frame that cannot be written ends that operation with the error, and the publication reaches the others', async () => {
  /** A one-view-at-a-time source, as a live subscriber is. */
  class Source extends ReadyStream<ExecutionResult> {
    view: ExecutionResult | null = null;
    listener = () => {};
    left = false;
    offer(view: ExecutionResult) {
      this.view = view;
      this.listener();
    }
    read() {
      const view = this.view;
      this.view = null;
      return view ? { done: false as const, value: view } : undefined;
    }
    onReadable(listener: () => void) {
      this.listener = listener;
    }
    async return() {
      this.left = true;
      return DONE;
    }
  }
  const written: Buffer[] = [];
  const socketWith = (write: (frame: Buffer) => void) =>
    ({ readyState: 1, OPEN: 1, extensions: '', _socket: { write } }) as unknown as WebSocket;
  const failing = new Source();
  const working = new Source();
  const failed = writeFrames(
    failing,
    socketWith(() => {
      throw new Error('socket gone');
    }),
    'a',
    (r) => r,
  ).next();
  writeFrames(
    working,
    socketWith((frame) => void written.push(frame)),
    'b',
    (r) => r,
  );
  const view = { data: { n: 1 } };
  // One publication, in order: the failing subscriber first.
  expect(() => {
    for (const source of [failing, working]) source.offer(view);
  }).not.toThrow();
  await expect(failed).rejects.toThrow('socket gone');
  expect(failing.left).toBe(true);
  expect(written).toHaveLength(1);
  expect(String(written[0]?.subarray(2))).toBe('{"id":"b","type":"next","payload":{"data":{"n":1}}}');
});
