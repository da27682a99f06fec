/**
 * Memory per idle subscription against an idle raw `ws` socket, each measured in a server process
 * of its own that did nothing before (bench:live's server is the same code, started fresh):
 *
 *   npm run bench:memory                 (SUBSCRIBERS=2000)
 *
 * Raw: as many plain `ws` sockets, each in its broadcast group (a Set per topic), on the raw server
 * of live-server.ts. Ours: as many graphql-ws clients, each with one `deriverStatus` subscription
 * over 10 sessions. Both: what the server holds live after a full collection (heap and buffers,
 * `heapUsed + external`), before and after, divided by the count.
 *
 * Why fresh processes: the raw twin, measured in bench:live's one process after our sockets had
 * closed, came out at a third of what it holds in a fresh process (most likely the second set of
 * sockets finds what the first grew: buffers, tables); each set here is the first of its process.
 *
 * Last line: {"bench":"memory","subscribers","kbPerSubscription","kbPerRawSocket","ratio"}.
 */
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { type LiveServer, startLiveServer } from './live-process.ts';
import { report, round } from './util.ts';

const SIZE = Number(process.env.SUBSCRIBERS ?? 2000);
const SESSIONS = Array.from({ length: 10 }, (_, i) => `s${i}`);
const BATCH = 250;

/** Live KB once exactly `sockets` WebSockets are open, after a full collection. */
const liveKb = async (server: LiveServer, sockets: number): Promise<number> =>
  Number((await server.command({ op: 'quiesce', sockets })).liveKb);

/** Opens `n` at a time in batches; resolves with what `open` made. */
async function inBatches<T>(n: number, open: (i: number) => Promise<T>): Promise<T[]> {
  const made: T[] = [];
  for (let i = 0; i < n; i += BATCH) {
    made.push(...(await Promise.all(Array.from({ length: Math.min(BATCH, n - i) }, (_, k) => open(i + k)))));
  }
  return made;
}

async function rawKbPerSocket(): Promise<number> {
  const server = await startLiveServer();
  const before = await liveKb(server, 0);
  const sockets = await inBatches(SIZE, (i) => {
    const socket = new WebSocket(server.rawUrl);
    return new Promise<WebSocket>((resolve) =>
      socket.once('open', () => {
        socket.send(String(i % SESSIONS.length)); // joins its group
        resolve(socket);
      }),
    );
  });
  const after = await liveKb(server, SIZE);
  for (const socket of sockets) socket.terminate();
  await server.release();
  return (after - before) / SIZE;
}

async function ourKbPerSubscription(): Promise<number> {
  const server = await startLiveServer();
  for (const session of SESSIONS) {
    const response = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        query: 'mutation($s:ID!){upsertSession(workspaceId:"mem",id:$s,peers:[{peerId:"a"}]){id}}',
        variables: { s: session },
      }),
    });
    if (!response.ok) throw new Error(`upsertSession: HTTP ${response.status}`);
  }
  const before = await liveKb(server, 0);
  const clients = await inBatches(SIZE, (i) => {
    const client = createClient({
      url: server.url.replace('http', 'ws'),
      webSocketImpl: WebSocket,
      lazy: false,
    });
    return new Promise<typeof client>((resolve, reject) => {
      client.subscribe(
        {
          query:
            'subscription($s:ID){deriverStatus(workspaceId:"mem",sessionId:$s){totalWorkUnits pendingWorkUnits}}',
          variables: { s: SESSIONS[i % SESSIONS.length] },
        },
        { next: () => resolve(client), error: reject, complete: () => {} },
      );
    });
  });
  const after = await liveKb(server, SIZE);
  await Promise.all(clients.map((client) => client.dispose()));
  await server.release();
  return (after - before) / SIZE;
}

const kbPerRawSocket = await rawKbPerSocket();
report({ bench: 'memory', phase: 'raw', sockets: SIZE, kbPerSocket: round(kbPerRawSocket, 2) });
const kbPerSubscription = await ourKbPerSubscription();
report({
  bench: 'memory',
  phase: 'ours',
  subscriptions: SIZE,
  kbPerSubscription: round(kbPerSubscription, 2),
});
report({
  bench: 'memory',
  subscribers: SIZE,
  kbPerSubscription: round(kbPerSubscription, 2),
  kbPerRawSocket: round(kbPerRawSocket, 2),
  ratio: round(kbPerSubscription / kbPerRawSocket, 2),
});
