/**
 * Hostile input against a real server process (`npm start`'s entry): thousands of generated
 * malformed documents, variables, raw bodies and raw WebSocket frames. The process stays up, every
 * reply is a clean coded error (never a 5xx, never INTERNAL_SERVER_ERROR), its memory stays bounded,
 * and a recount shows no partial write: exactly the messages of the calls that were answered OK,
 * each with its task.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { tempDir } from './helpers.ts';
import { listeningUrl, rssMb as processRssMb } from './support/processes.ts';

const MAIN = fileURLToPath(new URL('../src/server/main.ts', import.meta.url));
const temp = tempDir();
let child: ChildProcess;
let url: string;
/** Everything the server wrote, to check no client mistake was logged as a server fault. */
let output = '';

const rssMb = (): number => processRssMb(child.pid!);

beforeAll(async () => {
  child = spawn(process.execPath, ['--import', 'tsx', MAIN], {
    env: {
      ...process.env,
      PORT: '0',
      DATABASE_URL: `file:${temp.path('fuzz.db')}`,
      WORKER_CONCURRENCY: '2',
      DEMO_TASK_MS: '0',
      MUTATIONS_PER_SECOND: '0',
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stderr?.on('data', (chunk) => {
    output += chunk;
  });
  child.stdout?.on('data', (chunk) => {
    output += chunk;
  });
  url = await listeningUrl(child);
  const setup = await post({
    query: 'mutation{upsertSession(id:"fz",peers:[{peerId:"a"}],settings:{summariesEnabled:false}){id}}',
  });
  expect(setup.status).toBe(200);
});
afterAll(async () => {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
  temp.remove();
});

const post = async (body: unknown, raw = false) => {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: raw ? Buffer.from(body as Uint8Array) : JSON.stringify(body),
  });
  return { status: response.status, text: await response.text() };
};

/** Checks one reply is clean: no 5xx, JSON, every error coded and none internal. */
function clean(reply: { status: number; text: string }): { data?: unknown; errors?: unknown[] } {
  expect(reply.status, reply.text.slice(0, 200)).toBeLessThan(500);
  const json = JSON.parse(reply.text) as { data?: unknown; errors?: { extensions?: { code?: unknown } }[] };
  for (const error of json.errors ?? []) {
    expect(typeof error.extensions?.code, JSON.stringify(error).slice(0, 200)).toBe('string');
    expect(error.extensions?.code).not.toBe('INTERNAL_SERVER_ERROR');
  }
  return json;
}

const TOKENS = [
  '{',
  '}',
  '(',
  ')',
  '[',
  ']',
  ':',
  '...',
  '@skip(if:true)',
  '@include',
  'query',
  'mutation',
  'subscription',
  'deriverStatus',
  'addMessages',
  'session',
  'peer',
  'id',
  'totalWorkUnits',
  'sessions',
  '"x"',
  '""',
  '$v',
  '!',
  '=',
  '#',
  'fragment',
  'on',
  'DeriverStatus',
  '__typename',
  '__schema',
  'sessionId:',
  'workspaceId:',
  ' ',
  '1',
  '-1.5e99',
  'true',
  'null',
  '"\\u0000"',
  '"""',
  'a:',
  '\n',
] as const;
const documents = fc.oneof(
  fc.array(fc.constantFrom(...TOKENS), { maxLength: 60 }).map((t) => t.join(' ')),
  fc.string({ unit: 'grapheme', maxLength: 200 }),
  fc
    .integer({ min: 1, max: 3000 })
    .map((n) => `${'{deriverStatus'.repeat(Math.min(n, 50))}${'}'.repeat(n % 60)}`),
);

let acknowledgedMessages = 0;

describe('hostile input', () => {
  it('answers thousands of malformed documents, variables and bodies cleanly, writing all or nothing', async () => {
    const before = rssMb();
    await fc.assert(
      fc.asyncProperty(documents, fc.jsonValue({ maxDepth: 3 }), async (query, variables) => {
        clean(await post({ query, variables }));
      }),
      { numRuns: 1500 },
    );
    const message = fc.record(
      {
        peerId: fc.oneof(fc.constant('a'), fc.constant('b'), fc.string({ maxLength: 5 }), fc.integer()),
        content: fc.oneof(
          fc.string({ maxLength: 30 }),
          fc.constant('\ud800'),
          fc.integer(),
          fc.constant(null),
        ),
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(message, { maxLength: 120 }), async (messages) => {
        const reply = clean(
          await post({
            query: 'mutation($m:[MessageInput!]!){addMessages(sessionId:"fz",messages:$m){messages{seq}}}',
            variables: { m: messages },
          }),
        );
        const written = (reply.data as { addMessages?: { messages: unknown[] } } | null)?.addMessages
          ?.messages;
        if (written) acknowledgedMessages += written.length;
      }),
      { numRuns: 1000 },
    );
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 4096 }), async (bytes) => {
        clean(await post(bytes, true));
      }),
      { numRuns: 500 },
    );
    expect(acknowledgedMessages).toBeGreaterThan(0);
    expect(rssMb() - before).toBeLessThan(200);
  });

  it('survives raw WebSocket frames of every shape, closing only the offending socket', async () => {
    const frames = fc.oneof(
      fc.string({ maxLength: 300 }),
      fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
      fc
        .record({
          type: fc.constantFrom(
            'subscribe',
            'next',
            'complete',
            'ping',
            'pong',
            'connection_init',
            'error',
            'bogus',
          ),
          id: fc.oneof(fc.string({ maxLength: 5 }), fc.integer(), fc.constant(undefined)),
          payload: fc.oneof(
            fc.jsonValue({ maxDepth: 2 }),
            documents.map((query) => ({ query })),
          ),
        })
        .map((m) => JSON.stringify(m)),
    );
    let closedByServer = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(frames, { minLength: 1, maxLength: 8 }), async (sequence) => {
        const socket = new WebSocket(url.replace(/^http/, 'ws'), 'graphql-transport-ws');
        await new Promise((resolve, reject) => {
          socket.once('open', resolve);
          socket.once('error', reject);
        });
        const closed = new Promise<number>((resolve) => socket.once('close', resolve));
        socket.send(JSON.stringify({ type: 'connection_init' }));
        for (const frame of sequence) socket.send(frame);
        socket.send(JSON.stringify({ type: 'ping' }));
        // The server answers the last ping unless a frame before it closed the socket.
        const answered = new Promise<0>((resolve) =>
          socket.on('message', (data) => {
            if (String(data).includes('"pong"')) resolve(0);
          }),
        );
        const code = await Promise.race([closed, answered]);
        if (code !== 0) {
          closedByServer++;
          expect(code, `close code for ${sequence.join(' | ').slice(0, 200)}`).not.toBe(4500);
          expect(code).not.toBe(1011);
        } else {
          socket.close();
          expect(await closed).not.toBe(4500);
        }
      }),
      { numRuns: 600 },
    );
    expect(closedByServer).toBeGreaterThan(0);
    expect(clean(await post({ query: '{__typename}' })).data).toEqual({ __typename: 'Query' });
  });

  it('keeps exact counts: the messages stored are those acknowledged, each with its one task', async () => {
    const reply = clean(
      await post({
        query: '{session(id:"fz"){messageCount} deriverStatus(sessionId:"fz"){totalWorkUnits}}',
      }),
    ) as { data: { session: { messageCount: number }; deriverStatus: { totalWorkUnits: number } } };
    expect(reply.data.session.messageCount).toBe(acknowledgedMessages);
    expect(reply.data.deriverStatus.totalWorkUnits).toBe(acknowledgedMessages);
  });

  it('logged none of it as a server fault', () => {
    const lines = output.split('\n').filter((line) => line.trim() !== '');
    const faults = lines.filter(
      (line) => !line.startsWith('{') || (JSON.parse(line) as { level: number }).level >= 50,
    );
    expect(faults.filter((line) => !/^(Deriver Live is listening| {2}\w+:)/.test(line))).toEqual([]);
  });
});
