/**
 * The server of `npm run bench:live` (live-server.ts) as the load generator drives it: the process,
 * started on import (live-process.ts), its commands over IPC, its memory, and GraphQL over HTTP to it.
 */
import { Agent, request } from 'node:http';
import { type Command, startLiveServer } from './live-process.ts';

export const now = () => performance.timeOrigin + performance.now();
export type Counts = {
  totalWorkUnits: number;
  completedWorkUnits: number;
  inProgressWorkUnits: number;
  pendingWorkUnits: number;
  failedWorkUnits: number;
};
export const COUNTS =
  'totalWorkUnits completedWorkUnits inProgressWorkUnits pendingWorkUnits failedWorkUnits';
export const LATENCY_SUBSCRIPTION = `subscription($w:ID,$s:ID,$c:Int){deriverStatus(workspaceId:$w,sessionId:$s,coalesceMs:$c){${COUNTS}}}`;

// ---- the server process ---------------------------------------------------------------------

const server = await startLiveServer();
export const { url, rawUrl } = server;
export const command = (c: Command): Promise<Record<string, unknown>> => server.command(c);
export const serverRssKb = (): number => server.rssKb();
/**
 * GraphQL over HTTP with node:http and kept-alive connections: the cheapest real client, so the
 * generator's own cost per round stays small beside the raw twin's rounds (an IPC message each).
 * (undici's fetch here added a fifth to a third to the 1k latency p99 of our passes.)
 */
const httpAgent = new Agent({ keepAlive: true, maxSockets: 4 });
export function gql<T = Record<string, unknown>>(query: string, variables?: object): Promise<T> {
  const payload = JSON.stringify({ query, variables });
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        agent: httpAgent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          const body = JSON.parse(Buffer.concat(chunks).toString()) as { data?: T; errors?: unknown };
          if (body.errors) reject(new Error(JSON.stringify(body.errors)));
          else resolve(body.data as T);
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}
export async function setupWorkspace(workspaceId: string, sessions: string[]) {
  await gql('mutation($w:ID!){upsertWorkspace(id:$w,settings:{summariesEnabled:false}){id}}', {
    w: workspaceId,
  });
  for (const id of sessions) {
    await gql(
      'mutation($w:ID,$id:ID!,$p:ID!){upsertSession(workspaceId:$w,id:$id,peers:[{peerId:$p}]){id}}',
      {
        w: workspaceId,
        id,
        p: `p-${id}`,
      },
    );
  }
}
export const addMessages = (workspaceId: string, sessionId: string, count: number) =>
  gql(
    'mutation($w:ID,$s:ID!,$m:[MessageInput!]!){addMessages(workspaceId:$w,sessionId:$s,messages:$m){enqueuedTasks}}',
    {
      w: workspaceId,
      s: sessionId,
      m: Array.from({ length: count }, () => ({ peerId: `p-${sessionId}`, content: 'x' })),
    },
  );

/** Lets the server process go (it exits once its IPC channel closes). */
export function releaseServer(): void {
  httpAgent.destroy();
  void server.release();
}
