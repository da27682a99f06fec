/**
 * Honcho's REST API, the subset this service does (docs/honcho.md), so Honcho's own SDKs work
 * unchanged: get-or-create of workspaces, peers and sessions, a session's peers, adding messages,
 * and the queue status. Each route is one GraphQL operation run through the same Yoga instance as
 * `/graphql` (`execute`), so keys, validation, limits and errors are the API's own; the answer is
 * turned into Honcho's snake_case body, and a GraphQL error into Honcho's `{ "detail": ... }` with
 * the HTTP status its code means. Stateless: one request, one operation.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson } from './health.ts';

/** A GraphQL operation's answer, as Yoga returns it. */
export interface GraphqlResult {
  readonly data?: Record<string, unknown> | null;
  readonly errors?: readonly {
    readonly message: string;
    readonly extensions?: { readonly code?: string };
  }[];
}

/** Runs one operation with the request's `Authorization` header, as `/graphql` would. */
export type ExecuteGraphql = (
  request: { query: string; variables: Record<string, unknown> },
  from: { authorization: string | undefined; clientAddress: string | undefined },
) => Promise<GraphqlResult>;

/** The HTTP status of each GraphQL error code (FastAPI's, as Honcho answers). */
const STATUS_OF_CODE: Readonly<Record<string, number>> = {
  BAD_USER_INPUT: 422,
  GRAPHQL_VALIDATION_FAILED: 422,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  RATE_LIMITED: 429,
  PAYLOAD_TOO_LARGE: 413,
  STORE_UNAVAILABLE: 503,
};

/** A request Honcho's API would refuse: its status and `detail`. */
class RestError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const WORKSPACE_FIELDS = 'id';
const SESSION_FIELDS = 'id workspaceId peers { peerId observeMe observeOthers }';
const COUNT_FIELDS = 'totalWorkUnits completedWorkUnits inProgressWorkUnits pendingWorkUnits';

interface Counts {
  totalWorkUnits: number;
  completedWorkUnits: number;
  inProgressWorkUnits: number;
  pendingWorkUnits: number;
}

const snakeCounts = (c: Counts) => ({
  total_work_units: c.totalWorkUnits,
  completed_work_units: c.completedWorkUnits,
  in_progress_work_units: c.inProgressWorkUnits,
  pending_work_units: c.pendingWorkUnits,
});

const workspaceBody = (w: { id: string }) => ({ id: w.id, metadata: {}, configuration: {} });
const peerBody = (p: { id: string; workspaceId: string; observeMe: boolean }) => ({
  id: p.id,
  workspace_id: p.workspaceId,
  metadata: {},
  configuration: { observe_me: p.observeMe },
});
const sessionBody = (s: { id: string; workspaceId: string }) => ({
  id: s.id,
  workspace_id: s.workspaceId,
  is_active: true,
  metadata: {},
  configuration: {},
});

/** A JSON object, or a 422 naming what was expected. */
function object(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new RestError(422, `${what} must be a JSON object`);
  return value as Record<string, unknown>;
}

/** Honcho's `{ peer_id: { observe_me, observe_others } }` as `SessionPeerInput`s. */
function sessionPeers(value: unknown): { peerId: string; observeMe?: boolean; observeOthers?: boolean }[] {
  return Object.entries(object(value ?? {}, 'peers')).map(([peerId, config]) => {
    const c = object(config ?? {}, `peers.${peerId}`);
    return {
      peerId,
      ...(typeof c.observe_me === 'boolean' ? { observeMe: c.observe_me } : {}),
      ...(typeof c.observe_others === 'boolean' ? { observeOthers: c.observe_others } : {}),
    };
  });
}

interface Route {
  readonly method: 'GET' | 'POST';
  /** Honcho's path, its parameters in braces: `/v3/workspaces/{workspace_id}/peers`. */
  readonly path: string;
  /** The operation for this request, and how its data becomes Honcho's body. */
  readonly operation: (
    params: readonly string[],
    body: Record<string, unknown>,
    query: URLSearchParams,
  ) => {
    query: string;
    variables: Record<string, unknown>;
    answer: (data: Record<string, unknown>) => unknown;
  };
}

/** The routes, in Honcho's paths (`/v3/...`). */
const ROUTES: readonly Route[] = [
  {
    method: 'POST',
    path: '/v3/workspaces',
    operation: (_params, body) => ({
      query: `mutation ($id: ID!) { upsertWorkspace(id: $id) { ${WORKSPACE_FIELDS} } }`,
      variables: { id: body.id },
      answer: (data) => workspaceBody(data.upsertWorkspace as { id: string }),
    }),
  },
  {
    method: 'POST',
    path: '/v3/workspaces/{workspace_id}/peers',
    operation: ([workspaceId], body) => {
      const configuration = object(body.configuration ?? {}, 'configuration');
      return {
        query: `mutation ($workspaceId: ID, $id: ID!, $observeMe: Boolean) {
          upsertPeer(workspaceId: $workspaceId, id: $id, observeMe: $observeMe) { id workspaceId observeMe } }`,
        variables: {
          workspaceId,
          id: body.id,
          ...(typeof configuration.observe_me === 'boolean' ? { observeMe: configuration.observe_me } : {}),
        },
        answer: (data) => peerBody(data.upsertPeer as Parameters<typeof peerBody>[0]),
      };
    },
  },
  {
    method: 'POST',
    path: '/v3/workspaces/{workspace_id}/sessions',
    operation: ([workspaceId], body) => ({
      query: `mutation ($workspaceId: ID, $id: ID!, $peers: [SessionPeerInput!]) {
        upsertSession(workspaceId: $workspaceId, id: $id, peers: $peers) { ${SESSION_FIELDS} } }`,
      variables: { workspaceId, id: body.id, peers: sessionPeers(body.peers) },
      answer: (data) => sessionBody(data.upsertSession as Parameters<typeof sessionBody>[0]),
    }),
  },
  {
    method: 'POST',
    path: '/v3/workspaces/{workspace_id}/sessions/{session_id}/peers',
    operation: ([workspaceId, id], body) => ({
      query: `mutation ($workspaceId: ID, $id: ID!, $peers: [SessionPeerInput!]) {
        upsertSession(workspaceId: $workspaceId, id: $id, peers: $peers) { ${SESSION_FIELDS} } }`,
      variables: { workspaceId, id, peers: sessionPeers(body) },
      answer: (data) => sessionBody(data.upsertSession as Parameters<typeof sessionBody>[0]),
    }),
  },
  {
    method: 'POST',
    path: '/v3/workspaces/{workspace_id}/sessions/{session_id}/messages',
    operation: ([workspaceId, sessionId], body) => {
      if (!Array.isArray(body.messages)) throw new RestError(422, 'messages must be a list');
      const messages = body.messages.map((m: unknown, i: number) => {
        const message = object(m, `messages[${i}]`);
        return { peerId: message.peer_id, content: message.content };
      });
      return {
        query: `mutation ($workspaceId: ID, $sessionId: ID!, $messages: [MessageInput!]!) {
          addMessages(workspaceId: $workspaceId, sessionId: $sessionId, messages: $messages) {
            messages { id sessionId peerId content createdAt } } }`,
        variables: { workspaceId, sessionId, messages },
        answer: (data) =>
          (
            data.addMessages as {
              messages: {
                id: string;
                sessionId: string;
                peerId: string;
                content: string;
                createdAt: string;
              }[];
            }
          ).messages.map((m) => ({
            id: m.id,
            content: m.content,
            peer_id: m.peerId,
            session_id: m.sessionId,
            workspace_id: workspaceId,
            metadata: {},
            created_at: m.createdAt,
            token_count: Math.ceil(m.content.length / 4),
          })),
      };
    },
  },
  {
    method: 'GET',
    path: '/v3/workspaces/{workspace_id}/queue/status',
    operation: ([workspaceId], _body, query) => {
      const filter = {
        observerId: query.get('observer_id') || undefined,
        senderId: query.get('sender_id') || undefined,
        sessionId: query.get('session_id') || undefined,
      };
      return {
        query: `query ($workspaceId: ID, $observerId: ID, $senderId: ID, $sessionId: ID) {
          deriverStatus(workspaceId: $workspaceId, observerId: $observerId, senderId: $senderId, sessionId: $sessionId) {
            ${COUNT_FIELDS} sessions { sessionId ${COUNT_FIELDS} } } }`,
        variables: { workspaceId, ...filter },
        answer: (data) => {
          const status = data.deriverStatus as Counts & {
            sessions: (Counts & { sessionId: string })[] | null;
          };
          return {
            ...snakeCounts(status),
            // Honcho lists sessions when the status is not of one session.
            ...(filter.sessionId || !status.sessions
              ? {}
              : {
                  sessions: Object.fromEntries(
                    status.sessions.map((s) => [s.sessionId, { session_id: s.sessionId, ...snakeCounts(s) }]),
                  ),
                }),
          };
        },
      };
    },
  },
];

/** Each route's path as a pattern, a `{parameter}` matching one path segment. */
const PATTERNS = new Map(
  ROUTES.map((route) => [route, new RegExp(`^${route.path.replace(/\{\w+\}/g, '([^/]+)')}$`)]),
);

/** What a request for another path is told is served. */
const ROUTE_LIST = ROUTES.map((route) => `${route.method} ${route.path}`).join(', ');

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new RestError(422, `the path segment "${segment.slice(0, 100)}" is not valid percent-encoding`);
  }
}

async function readJson(req: IncomingMessage, maxBytes: number): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) throw new RestError(413, `the body is larger than ${maxBytes} bytes`);
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return {};
  try {
    return object(JSON.parse(Buffer.concat(chunks).toString('utf8')), 'the body');
  } catch (error) {
    if (error instanceof RestError) throw error;
    throw new RestError(422, 'the body is not valid JSON');
  }
}

/** The handler of `/v3/...` paths; `false` for any other path (not Honcho's). */
export function createHonchoRest(options: {
  readonly execute: ExecuteGraphql;
  readonly maxBodyBytes: number;
}) {
  const answer = async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    const matches = ROUTES.flatMap((route) => {
      const found = PATTERNS.get(route)?.exec(url.pathname);
      return found ? [{ route, params: found.slice(1).map(decodeSegment) }] : [];
    });
    const match = matches.find((m) => m.route.method === req.method);
    if (!match) {
      if (matches.length > 0) throw new RestError(405, `${req.method} is not served on ${url.pathname}`);
      throw new RestError(
        404,
        `not a route of Honcho's API that Deriver Live serves (it serves ${ROUTE_LIST})`,
      );
    }
    const body = req.method === 'POST' ? await readJson(req, options.maxBodyBytes) : {};
    const { query, variables, answer: toBody } = match.route.operation(match.params, body, url.searchParams);
    const result = await options.execute(
      { query, variables },
      { authorization: req.headers.authorization, clientAddress: req.socket.remoteAddress },
    );
    const [error] = result.errors ?? [];
    if (error || !result.data) {
      const code = error?.extensions?.code ?? 'INTERNAL_SERVER_ERROR';
      throw new RestError(STATUS_OF_CODE[code] ?? 500, error?.message ?? 'no answer');
    }
    sendJson(res, 200, toBody(result.data));
  };

  return {
    /** Answers a `/v3/...` request; returns false, answering nothing, for other paths. */
    async handle(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
      const url = new URL(req.url ?? '/', 'http://localhost');
      if (url.pathname !== '/v3' && !url.pathname.startsWith('/v3/')) return false;
      try {
        await answer(req, res, url);
      } catch (error) {
        if (!(error instanceof RestError)) throw error;
        if (!res.headersSent) sendJson(res, error.status, { detail: error.message });
      }
      return true;
    },
  };
}
