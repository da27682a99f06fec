/**
 * The server side of `npm run bench:live`, run as its own process. It serves the API with
 * `stampChanges` (subscription results carry `extensions.changedAt`) and, on a second port, a raw
 * `ws` server used as the broadcast baseline. The load generator steers it over IPC.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { WebSocketServer } from 'ws';
import { zeroCounters } from '../src/domain/counters.ts';
import type { TaskHandler } from '../src/scheduler/options.ts';
import { startApp } from '../src/server/app.ts';
import { loadConfig } from '../src/server/config.ts';
import { DEFAULT_SERVER_LIMITS } from '../src/server/server-limits.ts';
import { benchDir } from './util.ts';

type Mode = { kind: 'noop' } | { kind: 'delay'; ms: number } | { kind: 'block' };
export type ServerCommand =
  | { id: number; op: 'mode'; mode: Mode }
  | { id: number; op: 'churn'; workspaceId: string; sessionId: string; changes: number }
  | { id: number; op: 'broadcast'; bytes: number; count: number }
  /** The latency pattern's raw twin: `count` stamped frames of `bytes` to the sockets of `group`. */
  | { id: number; op: 'rawRound'; group: number; bytes: number; count: number }
  | { id: number; op: 'status'; workspaceId: string }
  /**
   * Waits until exactly `sockets` WebSockets are open (ours and raw: the previous pass's closes are
   * handled), then collects garbage, so that a measured pass does not pay for the previous one.
   */
  | { id: number; op: 'quiesce'; sockets: number };

let mode: Mode = { kind: 'noop' };
let unblock: () => void = () => {};
let blocked = new Promise<void>((resolve) => {
  unblock = resolve;
});
const handler: TaskHandler = async ({ signal }) => {
  if (mode.kind === 'delay') await sleep(mode.ms, undefined, { signal });
  else if (mode.kind === 'block') await blocked;
};

const dir = benchDir();
const app = await startApp(
  {
    ...loadConfig({}),
    port: 0,
    databaseUrl: `file:${dir.path('live.db')}`,
    demoTaskMs: 0,
    logLevel: 'silent',
    webhookAllowPrivate: true, // the webhook phase's receiver is the generator, on loopback
    // Thousands of subscribers on loopback, one client address.
    limits: { ...DEFAULT_SERVER_LIMITS, maxConnectionsPerAddress: 0, mutationsPerSecond: 0 },
  },
  {
    logger: pino({ level: 'silent' }),
    handlers: { representation: handler, summary: handler },
    scheduler: { pollMs: 1_000 },
    server: { stampChanges: true, keepAliveMs: 0, connectionInitTimeoutMs: 60_000 },
  },
);

const raw = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: 64 * 1024 });
await new Promise((resolve) => raw.once('listening', resolve));
const rawPort = (raw.address() as { port: number }).port;
/** Raw sockets by the group (topic) each said it listens to, for the raw latency rounds. */
const rawGroups = new Map<number, Set<import('ws').WebSocket>>();
raw.on('connection', (socket) => {
  socket.once('message', (data) => {
    const group = Number(String(data));
    let set = rawGroups.get(group);
    if (!set) {
      set = new Set();
      rawGroups.set(group, set);
    }
    set.add(socket);
    socket.once('close', () => set.delete(socket));
  });
});

const reply = (id: number, body: object) => process.send?.({ id, ...body });
process.on('message', async (command: ServerCommand) => {
  if (command.op === 'mode') {
    mode = command.mode;
    if (mode.kind !== 'block') {
      unblock();
      blocked = new Promise<void>((resolve) => {
        unblock = resolve;
      });
    }
    reply(command.id, {});
  } else if (command.op === 'churn') {
    // Status changes without storage work, to measure fan-out alone: a synthetic unit's counters
    // move through the status engine exactly as a store commit would announce them.
    const key = {
      taskType: 'representation',
      workspaceId: command.workspaceId,
      sessionId: command.sessionId,
      observerId: 'synthetic',
      senderId: 'synthetic',
    } as const;
    const started = performance.timeOrigin + performance.now();
    for (let i = 0; i < command.changes; i++) {
      // A commit stamp no read has seen (SQLite stamps are commit numbers): always applied.
      app.status.apply({
        tx: String(Number.MAX_SAFE_INTEGER),
        units: [{ unitId: -1, key, delta: { ...zeroCounters(), pending: 1 } }],
      });
      await new Promise((resolve) => setImmediate(resolve));
    }
    reply(command.id, { started });
  } else if (command.op === 'broadcast') {
    const frame = 'x'.repeat(command.bytes);
    const started = performance.timeOrigin + performance.now();
    for (let i = 0; i < command.count; i++) for (const client of raw.clients) client.send(frame);
    reply(command.id, { started });
  } else if (command.op === 'rawRound') {
    // Stamped as the status engine stamps a change, then sent as our server sends an event: a
    // JSON frame of the same size to every socket of one topic.
    for (let n = 0; n < command.count; n++) {
      const changedAt = performance.timeOrigin + performance.now();
      const head = `{"changedAt":${changedAt},"pad":"`;
      const frame = `${head}${'x'.repeat(Math.max(0, command.bytes - head.length - 2))}"}`;
      for (const socket of rawGroups.get(command.group) ?? []) socket.send(frame);
      await new Promise((resolve) => setImmediate(resolve));
    }
    reply(command.id, {});
  } else if (command.op === 'quiesce') {
    const open = () => app.server.webSockets.size + raw.clients.size;
    while (open() !== command.sockets) await sleep(10);
    (globalThis as { gc?: () => void }).gc?.();
    // What is live after a full collection: the heap and what it holds outside (buffers).
    const { heapUsed, external } = process.memoryUsage();
    reply(command.id, { liveKb: (heapUsed + external) / 1024 });
  } else if (command.op === 'status') {
    reply(command.id, { status: await app.status.get({ workspaceId: command.workspaceId }) });
  }
});

process.send?.({ ready: true, url: app.url, rawUrl: `ws://127.0.0.1:${rawPort}` });
process.on('disconnect', async () => {
  raw.close();
  await app.close({ deadlineMs: 0 });
  dir.remove();
  process.exit(0);
});
