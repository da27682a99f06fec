/**
 * Honcho's REST API, the subset this service does (docs/honcho.md), so Honcho's own SDKs work
 * unchanged, 1.x (its v2 API) and 2.x (v3): get-or-create and update of workspaces, peers and
 * sessions with their metadata and configuration, a session's peers, adding messages (creating
 * the session), and the queue status. Each route declares its v2 and v3 paths once. Each route is one GraphQL operation run through the same Yoga instance as
 * `/graphql` (`execute`), so keys, validation, limits and errors are the API's own; the answer is
 * turned into Honcho's snake_case body, and a GraphQL error into Honcho's `{ "detail": ... }` with
 * the HTTP status its code means. Stateless: one request, one operation.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { GraphQLError } from 'graphql';
import type { BodyReader, BodySource } from '../api/request-body.ts';
import type { Scope } from '../auth/scope.ts';
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
  FORBIDDEN: 401,
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
    readonly headers?: Readonly<Record<string, string>>,
  ) {
    super(message);
  }
}

const ATTRIBUTE_FIELDS = 'createdAt metadata configuration created';
const WORKSPACE_FIELDS = `id ${ATTRIBUTE_FIELDS}`;
const PEER_FIELDS = `id workspaceId observeMe ${ATTRIBUTE_FIELDS}`;
const SESSION_FIELDS = `id workspaceId ${ATTRIBUTE_FIELDS}`;
const COUNT_FIELDS = 'totalWorkUnits completedWorkUnits inProgressWorkUnits pendingWorkUnits';

interface Counts {
  totalWorkUnits: number;
  completedWorkUnits: number;
  inProgressWorkUnits: number;
  pendingWorkUnits: number;
}

interface Stored {
  id: string;
  createdAt: string;
  metadata: Record<string, unknown>;
  configuration: Record<string, unknown>;
  created: boolean | null;
}

const snakeCounts = (c: Counts) => ({
  total_work_units: c.totalWorkUnits,
  completed_work_units: c.completedWorkUnits,
  in_progress_work_units: c.inProgressWorkUnits,
  pending_work_units: c.pendingWorkUnits,
});

/** The fields every Honcho object has: its id, when it was created, and its two JSON objects. */
const storedBody = (o: Stored) => ({
  id: o.id,
  metadata: o.metadata,
  configuration: o.configuration,
  created_at: o.createdAt,
});
const workspaceBody = (w: Stored) => storedBody(w);
const peerBody = (p: Stored & { workspaceId: string }) => ({ ...storedBody(p), workspace_id: p.workspaceId });
// Deriver Live keeps no inactive sessions: every stored session is active.
const sessionBody = (s: Stored & { workspaceId: string }) => ({
  ...storedBody(s),
  workspace_id: s.workspaceId,
  is_active: true,
});

/** A JSON object, or a 422 naming what was expected. */
function object(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new RestError(422, `${what} must be a JSON object`);
  return value as Record<string, unknown>;
}

/**
 * An id in a body: Honcho's ids are strings. A number is refused rather than turned into one
 * (`12345678901234567890` would already have lost digits as a JSON number).
 */
function stringId(value: unknown, what: string): string {
  if (typeof value !== 'string')
    throw new RestError(422, `${what} must be a string (Honcho's ids are strings)`);
  return value;
}

/** `metadata` and `configuration` of a body, when given (null or absent keeps the stored ones). */
function attributes(body: Record<string, unknown>) {
  const pick = (name: 'metadata' | 'configuration') =>
    body[name] === undefined || body[name] === null ? {} : { [name]: object(body[name], name) };
  return { ...pick('metadata'), ...pick('configuration') };
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

/**
 * Honcho lets any key of a workspace read the whole workspace's status; Deriver Live answers a
 * session key or a peer key only for what it reaches. So that Honcho's code runs unchanged with
 * such a key (`getDeriverStatus()`, `poll_deriver_status()`), a status request that names none of
 * the key's own objects is narrowed to them: a session key's to its session, a peer key's to what
 * its peer observes (docs/honcho.md). A filter that names them is left as it is.
 */
function narrowToScope(
  filter: { observerId?: string | undefined; senderId?: string | undefined; sessionId?: string | undefined },
  scope: Scope | null,
) {
  if (scope?.kind === 'session' && filter.sessionId === undefined)
    return { ...filter, sessionId: scope.sessionId };
  if (scope?.kind === 'peer' && filter.observerId === undefined && filter.senderId === undefined)
    return { ...filter, observerId: scope.peerId };
  return filter;
}

/** Honcho's API versions: v2 (its 1.x SDKs) and v3 (its 2.x SDKs). */
type Version = 'v2' | 'v3';

/** An answer: Honcho's body, and its status when not 200. */
interface Answer {
  readonly body: unknown;
  readonly status?: number;
}

/**
 * Whether a route answers 201 when it created the object: v3's get-or-create does; v2's (FastAPI's
 * default) and every update (`PUT`, a session's peers) answer 200.
 */
type OnCreate = 201 | 200;
const onCreateOf = (version: Version): OnCreate => (version === 'v3' ? 201 : 200);
const statusOf = (onCreate: OnCreate, created: boolean | null) => (created === true ? onCreate : 200);

interface Route {
  readonly method: 'GET' | 'POST' | 'PUT';
  /**
   * Honcho's path in each version that has the route, its parameters in braces
   * (`/v3/workspaces/{workspace_id}/peers`); a trailing slash is optional on every path.
   */
  readonly paths: Partial<Record<Version, string>>;
  /** The operation reads the caller's scope (`scope` below); others get `null` without a key check. */
  readonly scoped?: true;
  /** The operation for this request, and how its data becomes Honcho's answer. */
  readonly operation: (request: {
    params: readonly string[];
    body: Record<string, unknown>;
    query: URLSearchParams;
    version: Version;
    /** With `scoped`: the caller's scope when its key verifies (`null`: no key, auth off, a bad key). */
    scope: Scope | null;
  }) => {
    query: string;
    variables: Record<string, unknown>;
    answer: (data: Record<string, unknown>) => Answer;
  };
}

const both = (v3: string): Partial<Record<Version, string>> => ({ v2: v3.replace(/^\/v3/, '/v2'), v3 });

const upsertWorkspace = (id: string, body: Record<string, unknown>, onCreate: OnCreate) => ({
  query: `mutation ($id: ID!, $metadata: JSONObject, $configuration: JSONObject) {
    upsertWorkspace(id: $id, metadata: $metadata, configuration: $configuration) { ${WORKSPACE_FIELDS} } }`,
  variables: { id, ...attributes(body) },
  answer: (data: Record<string, unknown>): Answer => {
    const workspace = data.upsertWorkspace as Stored;
    return { body: workspaceBody(workspace), status: statusOf(onCreate, workspace.created) };
  },
});

const upsertPeer = (
  workspaceId: string | undefined,
  id: string,
  body: Record<string, unknown>,
  onCreate: OnCreate,
) => {
  const given = attributes(body);
  const observeMe = given.configuration?.observe_me;
  return {
    query: `mutation ($workspaceId: ID, $id: ID!, $observeMe: Boolean, $metadata: JSONObject, $configuration: JSONObject) {
      upsertPeer(workspaceId: $workspaceId, id: $id, observeMe: $observeMe, metadata: $metadata, configuration: $configuration) { ${PEER_FIELDS} } }`,
    variables: { workspaceId, id, ...given, ...(typeof observeMe === 'boolean' ? { observeMe } : {}) },
    answer: (data: Record<string, unknown>): Answer => {
      const peer = data.upsertPeer as Stored & { workspaceId: string };
      return { body: peerBody(peer), status: statusOf(onCreate, peer.created) };
    },
  };
};

const upsertSession = (
  workspaceId: string | undefined,
  id: string,
  body: Record<string, unknown>,
  peers: unknown,
  onCreate: OnCreate,
) => ({
  query: `mutation ($workspaceId: ID, $id: ID!, $peers: [SessionPeerInput!], $metadata: JSONObject, $configuration: JSONObject) {
    upsertSession(workspaceId: $workspaceId, id: $id, peers: $peers, metadata: $metadata, configuration: $configuration) { ${SESSION_FIELDS} } }`,
  variables: { workspaceId, id, peers: sessionPeers(peers), ...attributes(body) },
  answer: (data: Record<string, unknown>): Answer => {
    const session = data.upsertSession as Stored & { workspaceId: string };
    return { body: sessionBody(session), status: statusOf(onCreate, session.created) };
  },
});

/** The routes, in Honcho's paths. */
export const ROUTES: readonly Route[] = [
  {
    method: 'POST',
    paths: both('/v3/workspaces'),
    operation: ({ body, version }) => upsertWorkspace(stringId(body.id, 'id'), body, onCreateOf(version)),
  },
  {
    method: 'PUT',
    paths: both('/v3/workspaces/{workspace_id}'),
    operation: ({ params: [id], body }) => upsertWorkspace(id!, body, 200),
  },
  {
    method: 'POST',
    paths: both('/v3/workspaces/{workspace_id}/peers'),
    operation: ({ params: [workspaceId], body, version }) =>
      upsertPeer(workspaceId, stringId(body.id, 'id'), body, onCreateOf(version)),
  },
  {
    method: 'PUT',
    paths: both('/v3/workspaces/{workspace_id}/peers/{peer_id}'),
    operation: ({ params: [workspaceId, id], body }) => upsertPeer(workspaceId, id!, body, 200),
  },
  {
    method: 'POST',
    paths: both('/v3/workspaces/{workspace_id}/sessions'),
    operation: ({ params: [workspaceId], body, version }) =>
      upsertSession(workspaceId, stringId(body.id, 'id'), body, body.peers, onCreateOf(version)),
  },
  {
    method: 'PUT',
    paths: both('/v3/workspaces/{workspace_id}/sessions/{session_id}'),
    operation: ({ params: [workspaceId, id], body }) => upsertSession(workspaceId, id!, body, undefined, 200),
  },
  {
    method: 'POST',
    paths: both('/v3/workspaces/{workspace_id}/sessions/{session_id}/peers'),
    // The body is the peers map itself; the session is answered (200, as Honcho does).
    operation: ({ params: [workspaceId, id], body }) => upsertSession(workspaceId, id!, {}, body, 200),
  },
  {
    method: 'POST',
    paths: both('/v3/workspaces/{workspace_id}/sessions/{session_id}/messages'),
    operation: ({ params: [workspaceId, sessionId], body, version }) => {
      if (!Array.isArray(body.messages)) throw new RestError(422, 'messages must be a list');
      const messages = body.messages.map((m: unknown, i: number) => {
        const message = object(m, `messages[${i}]`);
        const metadata = message.metadata ?? null;
        return {
          peerId: stringId(message.peer_id, `messages[${i}].peer_id`),
          content: message.content,
          ...(metadata === null ? {} : { metadata: object(metadata, `messages[${i}].metadata`) }),
        };
      });
      return {
        // A message to a session that does not exist creates it, its senders as members (Honcho's rule).
        query: `mutation ($workspaceId: ID, $sessionId: ID!, $messages: [MessageInput!]!) {
          addMessages(workspaceId: $workspaceId, sessionId: $sessionId, messages: $messages, createSession: true) {
            messages { id sessionId peerId content createdAt metadata } } }`,
        variables: { workspaceId, sessionId, messages },
        answer: (data) => ({
          status: version === 'v3' ? 201 : 200,
          body: (
            data.addMessages as {
              messages: {
                id: string;
                sessionId: string;
                peerId: string;
                content: string;
                createdAt: string;
                metadata: Record<string, unknown>;
              }[];
            }
          ).messages.map((m) => ({
            id: m.id,
            content: m.content,
            peer_id: m.peerId,
            session_id: m.sessionId,
            workspace_id: workspaceId,
            metadata: m.metadata,
            created_at: m.createdAt,
            token_count: Math.ceil(m.content.length / 4),
          })),
        }),
      };
    },
  },
  {
    method: 'GET',
    paths: {
      v2: '/v2/workspaces/{workspace_id}/deriver/status',
      v3: '/v3/workspaces/{workspace_id}/queue/status',
    },
    scoped: true,
    operation: ({ params: [workspaceId], query, scope }) => {
      const filter = narrowToScope(
        {
          observerId: query.get('observer_id') || undefined,
          senderId: query.get('sender_id') || undefined,
          sessionId: query.get('session_id') || undefined,
        },
        scope,
      );
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
            body: {
              ...snakeCounts(status),
              // Honcho lists sessions when the status is not of one session.
              ...(filter.sessionId || !status.sessions
                ? {}
                : {
                    sessions: Object.fromEntries(
                      status.sessions.map((s) => [
                        s.sessionId,
                        { session_id: s.sessionId, ...snakeCounts(s) },
                      ]),
                    ),
                  }),
            },
          };
        },
      };
    },
  },
];

/** Each route's paths as patterns, a `{parameter}` matching one path segment, a trailing slash optional. */
const PATTERNS = ROUTES.flatMap((route) =>
  (Object.entries(route.paths) as [Version, string][]).map(([version, path]) => ({
    route,
    version,
    pattern: new RegExp(`^${path.replace(/\{\w+\}/g, '([^/]+)')}/?$`),
  })),
);

/** What a request for another path is told is served. */
const ROUTE_LIST = ROUTES.flatMap((route) =>
  Object.values(route.paths).map((path) => `${route.method} ${path}`),
).join(', ');

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new RestError(422, `the path segment "${segment.slice(0, 100)}" is not valid percent-encoding`);
  }
}

/** A Node request's body as the shared reader takes it. */
function incomingSource(req: IncomingMessage): BodySource {
  return {
    declaredLength: req.headers['content-length'] ?? null,
    async all() {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks);
    },
    chunks: () => req,
  };
}

/** The body as JSON, read by the server's one body reader (its limit, budget and refusals). */
async function readJson(req: IncomingMessage, bodies: BodyReader): Promise<Record<string, unknown>> {
  let bytes: Uint8Array;
  try {
    bytes = await bodies.read(incomingSource(req));
  } catch (error) {
    if (!(error instanceof GraphQLError)) throw error;
    const http = error.extensions.http as { status?: number; headers?: Record<string, string> } | undefined;
    throw new RestError(http?.status ?? 400, error.message, http?.headers);
  }
  if (bytes.byteLength === 0) return {};
  try {
    return object(JSON.parse(Buffer.from(bytes).toString('utf8')), 'the body');
  } catch (error) {
    if (error instanceof RestError) throw error;
    throw new RestError(422, 'the body is not valid JSON');
  }
}

/** The handler of `/v2/...` and `/v3/...` paths; `false` for any other path (not Honcho's). */
export function createHonchoRest(options: {
  readonly execute: ExecuteGraphql;
  /** The scope of a request's `Authorization` (`null` when it has none or it does not verify). */
  readonly scopeOf: (authorization: string | undefined) => Promise<Scope | null>;
  /** The server's one body reader (the same limit and in-flight budget as `/graphql`). */
  readonly bodies: BodyReader;
}) {
  const answer = async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    const matches = PATTERNS.flatMap(({ route, version, pattern }) => {
      const found = pattern.exec(url.pathname);
      return found ? [{ route, version, params: found.slice(1).map(decodeSegment) }] : [];
    });
    const match = matches.find((m) => m.route.method === req.method);
    if (!match) {
      if (matches.length > 0) throw new RestError(405, `${req.method} is not served on ${url.pathname}`);
      throw new RestError(
        404,
        `not a route of Honcho's API that Deriver Live serves (it serves ${ROUTE_LIST})`,
      );
    }
    const body = req.method === 'GET' ? {} : await readJson(req, options.bodies);
    const {
      query,
      variables,
      answer: toAnswer,
    } = match.route.operation({
      params: match.params,
      body,
      query: url.searchParams,
      version: match.version,
      scope: match.route.scoped ? await options.scopeOf(req.headers.authorization) : null,
    });
    const result = await options.execute(
      { query, variables },
      { authorization: req.headers.authorization, clientAddress: req.socket.remoteAddress },
    );
    const [error] = result.errors ?? [];
    if (error || !result.data) {
      const code = error?.extensions?.code ?? 'INTERNAL_SERVER_ERROR';
      // Honcho answers 401 to a key that does not reach the resource; its SDKs raise AuthenticationError.
      const message =
        code === 'FORBIDDEN' ? `JWT not permissioned for this resource: ${error?.message}` : error?.message;
      throw new RestError(STATUS_OF_CODE[code] ?? 500, message ?? 'no answer');
    }
    const { body: answer, status = 200 } = toAnswer(result.data);
    sendJson(res, status, answer);
  };

  return {
    /** Answers a `/v2/...` or `/v3/...` request; returns false, answering nothing, for other paths. */
    async handle(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
      const url = new URL(req.url ?? '/', 'http://localhost');
      if (!/^\/v[23](\/|$)/.test(url.pathname)) return false;
      try {
        await answer(req, res, url);
      } catch (error) {
        if (!(error instanceof RestError)) throw error;
        if (!res.headersSent) sendJson(res, error.status, { detail: error.message }, error.headers);
      }
      return true;
    },
  };
}
