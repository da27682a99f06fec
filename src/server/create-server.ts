/**
 * HTTP and WebSocket on one port and one path (`/graphql`): GraphQL over HTTP and Server-Sent
 * Events through Yoga, GraphQL over WebSocket (`graphql-transport-ws`) through graphql-ws, wired
 * through Yoga's envelop so plugins, error codes and masking apply the same on every transport.
 *
 * ## Guards, in the order a request meets them
 * 1. Connections per remote address (`connection-limit.ts`): over the cap, 429 and closed.
 * 2. Origin (`origin-policy.ts`): a browser request from another site is refused, 403 on HTTP and
 *    on the WebSocket upgrade; CORS headers are sent only for the configured origins.
 * 3. `/healthz`, `/readyz`, `/health` and the GraphiQL page are answered before GraphQL.
 * 4. Yoga: CSRF prevention (a form, multipart or text POST runs only with the
 *    `x-graphql-yoga-csrf` header: browsers cannot send one across sites without CORS; Yoga runs no
 *    mutation over GET), body
 *    limits (`request-body.ts`), query limits (graphql-armor), authentication (the context), the
 *    mutation rate (`mutation-rate-limit.ts`), authorization (in each resolver).
 * 5. WebSocket: the key is checked at `connection_init` (a bad one closes the socket with 4403);
 *    each subscribe is checked on its own, and a refused one gets an `error` message for its id
 *    only, as a syntax error does, never closing the socket.
 */

import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { EnvelopArmorPlugin } from '@escape.tech/graphql-armor';
import { useCSRFPrevention } from '@graphql-yoga/plugin-csrf-prevention';
import { useDisableIntrospection } from '@graphql-yoga/plugin-disable-introspection';
import { type ExecutionArgs, type ExecutionResult, type GraphQLError, getOperationAST } from 'graphql';
import { createYoga, type Plugin } from 'graphql-yoga';
import type { Logger } from 'pino';
import { type WebSocket, WebSocketServer } from 'ws';
import type { ApiContext, ApiServices } from '../api/context.ts';
import { createDerivationLoader } from '../api/derivation-api.ts';
import { createMaskError, useErrorCodes, withoutHttpExtensions } from '../api/errors.ts';
import { useMutationRateLimit } from '../api/mutation-rate-limit.ts';
import { createBodyReader, useRequestBodyLimits } from '../api/request-body.ts';
import { schema } from '../api/schema.ts';
import { createSharedSubscribe, useSharedSubscriptionResults } from '../api/shared-results.ts';
import { bearerToken } from '../auth/keyring.ts';
import { OPEN, type Principal, scopeKey } from '../auth/scope.ts';
import { RateLimitedError, UnauthenticatedError } from '../errors.ts';
import { isReadyStream } from '../util/ready-stream.ts';
import { createTokenBuckets } from '../util/token-bucket.ts';
import { createDashboardPage } from './dashboard/dashboard-page.ts';
import { GRAPHIQL_DEFAULT_QUERY } from './graphiql.ts';
import { createGraphiqlPage } from './graphiql-page.ts';
import { limitConnections } from './guards/connection-limit.ts';
import { createOriginPolicy } from './guards/origin-policy.ts';
import { HEALTH_PATHS, type ReadinessCheck, runReadiness, sendJson } from './health.ts';
import { createHonchoRest, type GraphqlResult } from './honcho-rest.ts';
import { DEFAULT_SERVER_LIMITS, type ServerLimits } from './server-limits.ts';
import { writeFrames } from './ws-frames.ts';
import { serveGraphqlWs } from './ws-transport.ts';

export interface DeriverServerOptions {
  readonly services: ApiServices;
  readonly logger: Logger;
  /** Resource limits; each omitted one takes its default (see `ServerLimits`). */
  readonly limits?: Partial<ServerLimits>;
  /** Web origins allowed besides the server's own (CORS and WebSocket). @default none */
  readonly allowedOrigins?: readonly string[];
  /** Introspection and "did you mean" suggestions. @default on without auth, off with auth */
  readonly introspection?: boolean;
  /**
   * Serve GraphQL (HTTP, SSE, WebSocket) and GraphiQL; `false` makes a worker-only process that
   * answers health checks only (404 elsewhere). @default true
   */
  readonly serveApi?: boolean;
  /** Served at `/metrics` (on worker-only instances too). @default none: 404 */
  readonly metrics?: { readonly contentType: string; render(): Promise<string> };
  /** Readiness checks by part name, run by `/readyz`. @default none */
  readonly readiness?: Readonly<Record<string, ReadinessCheck>>;
  /** Time a WebSocket client has to send `connection_init`, in ms. @default 3000 */
  readonly connectionInitTimeoutMs?: number;
  /** WebSocket keepalive ping interval, in ms (0 disables). @default 12000 */
  readonly keepAliveMs?: number;
  /** Benchmarks only: stamp subscription results with `extensions.changedAt`. @default false */
  readonly stampChanges?: boolean;
}

export interface DeriverServer {
  readonly httpServer: Server;
  /** The open WebSockets (graphql-transport-ws), for inspection: how many, and what each has queued. */
  readonly webSockets: ReadonlySet<{ readonly bufferedAmount: number }>;
  /** Listens and resolves with the GraphQL URL (`http://host:port/graphql`). */
  listen(port: number, host: string): Promise<string>;
  /** Closes WebSocket clients (1001), ends open SSE streams and stops listening. */
  close(): Promise<void>;
}

/**
 * What `onSubscribe` hands to `execute` and `subscribe` as the root value: whom to write to and,
 * for a query or mutation, Yoga's execute.
 */
type WsRoot = {
  execute?: (args: ExecutionArgs) => unknown;
  socket: WebSocket;
  id: string;
};

/** A subscription event's payload as sent: errors without their HTTP-only extensions. */
const nextPayload = (result: ExecutionResult): ExecutionResult =>
  result.errors ? { ...result, errors: withoutHttpExtensions(result.errors) } : result;

/** What the HTTP and WebSocket transports hand to the context factory. */
interface TransportContext {
  readonly request?: Request;
  readonly req?: IncomingMessage;
  /** Set by the WebSocket transport, which authenticated at `connection_init`. */
  readonly principal?: Principal;
  readonly clientAddress?: string;
}

const GRAPHQL_PATH = '/graphql';

/**
 * Yoga's CSRF prevention, for POSTs: a form, multipart or text body runs only with the
 * `x-graphql-yoga-csrf` header. GETs are left alone: Yoga runs no mutation over GET, and a page
 * from another site cannot read the answer (no CORS for it); GraphiQL's SSE subscriptions are GETs.
 */
function csrfPreventionOnPost(): Plugin {
  const inner = useCSRFPrevention({ requestHeaders: ['x-graphql-yoga-csrf'] });
  return {
    onRequestParse(payload) {
      if (payload.request.method !== 'GET') return inner.onRequestParse?.(payload);
    },
  };
}

/** Header of a connectionParams object, whatever its case (GraphiQL sends `Authorization`). */
function paramHeader(params: Readonly<Record<string, unknown>> | undefined, name: string): unknown {
  if (!params) return undefined;
  const key = Object.keys(params).find((k) => k.toLowerCase() === name);
  return key === undefined ? undefined : params[key];
}

export function createDeriverServer(options: DeriverServerOptions): DeriverServer {
  const { services, logger } = options;
  const { keys } = services;
  const limits: ServerLimits = { ...DEFAULT_SERVER_LIMITS, ...options.limits };
  const introspection = options.introspection ?? keys === null;
  const origins = createOriginPolicy({ allowedOrigins: options.allowedOrigins });
  const maskError = createMaskError(
    (error) => logger.error({ err: error }, 'internal error'),
    (entry) => logger.info(entry, 'client error'),
  );
  const sharedSubscribe = createSharedSubscribe({ stampChanges: options.stampChanges, maskError });
  const mutationBuckets = createTokenBuckets({ ratePerSecond: limits.mutationsPerSecond });
  const graphiql = createGraphiqlPage({
    render: {
      title: 'Deriver Live',
      // A browser cannot set headers on a WebSocket, and GraphiQL sends its Headers tab as HTTP
      // headers only: with auth on, its subscriptions go over SSE so the key in that tab applies.
      subscriptionsProtocol: keys ? 'SSE' : 'WS',
      defaultQuery: GRAPHIQL_DEFAULT_QUERY,
    },
  });

  const dashboard = createDashboardPage();

  const authenticate = async (authorization: unknown): Promise<Principal> =>
    keys ? keys.verify(bearerToken(authorization)) : OPEN;
  /** What resolvers get: the services, who asks, and whom rate limits count it against. */
  const apiContext = (principal: Principal, address: string | undefined): ApiContext => ({
    ...services,
    principal,
    messageDerivations: createDerivationLoader(services.derivation, principal),
    clientId: principal.kind === 'key' ? scopeKey(principal.scope) : `addr:${address ?? 'unknown'}`,
  });

  // One reader for every body: `/graphql` and Honcho's routes share its limit and in-flight budget.
  const bodies = createBodyReader({
    maxBodyBytes: limits.maxBodyBytes,
    maxInflightBytes: limits.maxInflightBodyBytes,
  });
  const yoga = createYoga<TransportContext>({
    schema,
    context: async (initial): Promise<ApiContext> =>
      apiContext(
        initial.principal ?? (await authenticate(initial.request?.headers.get('authorization'))),
        initial.clientAddress ?? initial.req?.socket.remoteAddress,
      ),
    graphqlEndpoint: GRAPHQL_PATH,
    // One body's size is bounded by useRequestBodyLimits, for every content type.
    maxRequestBodySize: false,
    // Health (Yoga's `/health` included) and GraphiQL are answered before Yoga (see `handle`).
    landingPage: false,
    graphiql: false,
    cors:
      origins.allowedOrigins.length > 0
        ? {
            origin: [...origins.allowedOrigins],
            credentials: true,
            methods: ['GET', 'POST'],
            allowedHeaders: ['authorization', 'content-type', 'accept', 'x-graphql-yoga-csrf'],
          }
        : false,
    maskedErrors: { maskError },
    plugins: [
      csrfPreventionOnPost(),
      useRequestBodyLimits(bodies),
      // Query limits: depth, aliases, tokens and cost.
      EnvelopArmorPlugin({
        maxDepth: { n: 8 },
        maxAliases: { n: 15 },
        maxTokens: { n: 5_000 },
        costLimit: { maxCost: 5_000 },
        blockFieldSuggestion: { enabled: !introspection },
      }),
      ...(introspection ? [] : [useDisableIntrospection()]),
      useErrorCodes(),
      useMutationRateLimit(mutationBuckets),
      useSharedSubscriptionResults(sharedSubscribe),
    ],
    logging: {
      debug: (...args: unknown[]) => logger.debug(args.map(String).join(' ')),
      info: (...args: unknown[]) => logger.info(args.map(String).join(' ')),
      warn: (...args: unknown[]) => logger.warn(args.map(String).join(' ')),
      // Yoga reports here every error it masked, a client's mistakes included; the server faults
      // among them are logged by `maskError` itself, so these stay at debug.
      error: (...args: unknown[]) =>
        args[0] instanceof Error
          ? logger.debug({ err: args[0] }, 'request error')
          : logger.error(args.map(String).join(' ')),
    },
  });

  // Honcho's REST subset: each route one operation through this Yoga, with the caller's key.
  const honcho = createHonchoRest({
    bodies,
    scopeOf: async (authorization) => {
      const principal = await authenticate(authorization).catch(() => OPEN);
      return principal.kind === 'key' ? principal.scope : null;
    },
    execute: async (operation, from) => {
      const response = await yoga.fetch(
        `http://localhost${GRAPHQL_PATH}`,
        {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            accept: 'application/graphql-response+json, application/json',
            ...(from.authorization === undefined ? {} : { authorization: from.authorization }),
          },
          body: JSON.stringify(operation),
        },
        { clientAddress: from.clientAddress },
      );
      return (await response.json()) as GraphqlResult;
    },
  });

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (!origins.allows(req)) {
      sendJson(res, 403, {
        errors: [
          {
            message: 'requests from this web origin are not allowed (see CORS_ORIGINS)',
            extensions: { code: 'FORBIDDEN' },
          },
        ],
      });
      return;
    }
    const path = (req.url ?? '/').split('?')[0];
    if (path === HEALTH_PATHS.alive) return sendJson(res, 200, { status: 'alive' });
    if (path === HEALTH_PATHS.ready || path === HEALTH_PATHS.legacy) {
      const { ready, body } = await runReadiness(options.readiness ?? {});
      return sendJson(res, ready ? 200 : 503, body);
    }
    if (path === '/metrics' && options.metrics) {
      const body = await options.metrics.render();
      res.writeHead(200, { 'content-type': options.metrics.contentType }).end(body);
      return;
    }
    if (options.serveApi === false) {
      return sendJson(res, 404, {
        errors: [
          {
            message: 'this is a worker-only instance: it serves health checks only (SERVE_API=false)',
            extensions: { code: 'NOT_FOUND' },
          },
        ],
      });
    }
    if ((path === GRAPHQL_PATH || path === `${GRAPHQL_PATH}/`) && graphiql.wants(req)) {
      return graphiql.serve(req, res);
    }
    if (path === '/' && (req.method === 'GET' || req.method === 'HEAD')) return dashboard.serve(req, res);
    if (await honcho.handle(req, res)) return;
    if (path !== GRAPHQL_PATH && path !== `${GRAPHQL_PATH}/`) {
      // A wrong turn gets a sentence saying where things are, not an empty 404.
      return sendJson(res, 404, {
        errors: [
          {
            message: `nothing is served at ${req.method} ${(path ?? '/').slice(0, 200)}: the GraphQL API is at ${GRAPHQL_PATH} (POST, GET, WebSocket), GraphiQL at ${GRAPHQL_PATH} in a browser, the dashboard at / (GET), Honcho's routes under /v2 and /v3, health at /healthz and /readyz`,
            extensions: { code: 'NOT_FOUND' },
          },
        ],
      });
    }
    return yoga(req, res);
  };

  const httpServer = createHttpServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      logger.error({ err: error }, 'request failed');
      if (!res.headersSent) sendJson(res, 500, { errors: [{ message: 'Internal server error' }] });
      else res.destroy();
    });
  });
  const connections = limitConnections(httpServer, { maxPerAddress: limits.maxConnectionsPerAddress });
  const wss = new WebSocketServer({
    server: httpServer,
    path: GRAPHQL_PATH,
    maxPayload: limits.wsMaxPayloadBytes,
    verifyClient: (info, done) =>
      options.serveApi === false
        ? done(false, 404, 'Worker-only instance')
        : origins.allows(info.req)
          ? done(true)
          : done(false, 403, 'Forbidden web origin'),
  });
  /** An operation refused before execution (its `error` message drops `extensions.http` in `onError`). */
  const refuse = (error: unknown): GraphQLError[] => [maskError(error) as GraphQLError];

  const ws = serveGraphqlWs(
    wss,
    {
      onConnect: async (ctx) => {
        const { extra } = ctx;
        try {
          const principal = await authenticate(paramHeader(ctx.connectionParams, 'authorization'));
          extra.principal = principal;
          extra.context = apiContext(principal, extra.clientAddress);
          return true;
        } catch (error) {
          const reason = error instanceof UnauthenticatedError ? error.message : 'Forbidden';
          // 4403 as graphql-ws does on `false`, with the reason a person can act on.
          extra.socket.close(4403, reason.slice(0, 120));
          return false;
        }
      },
      execute: (args) => (args.rootValue as WsRoot).execute?.(args) as never,
      // Events go straight from the shared subscribe function to the socket, each payload
      // serialized once for all its subscribers (see shared-results.ts and ws-frames.ts).
      subscribe: async (args) => {
        const { socket, id } = args.rootValue as WsRoot;
        const events = await sharedSubscribe({ ...args, rootValue: undefined });
        if (!isReadyStream(events)) return events as never;
        return writeFrames(events, socket, id, nextPayload) as never;
      },
      onSubscribe: async (ctx, id, payload) => {
        const { socket, clientAddress } = ctx.extra;
        const principal = ctx.extra.principal ?? OPEN;
        if (principal.kind === 'key' && principal.expiresAt !== null && principal.expiresAt <= Date.now()) {
          return refuse(new UnauthenticatedError('the key has expired'));
        }
        if (Object.keys(ctx.subscriptions).length > limits.maxSubscriptionsPerSocket) {
          return refuse(
            new RateLimitedError(
              `at most ${limits.maxSubscriptionsPerSocket} operations may be open on one connection; complete one first`,
              null,
            ),
          );
        }
        const enveloped = yoga.getEnveloped({ params: payload, principal, clientAddress });
        try {
          const document = enveloped.parse(payload.query);
          const errors = enveloped.validate(enveloped.schema, document);
          if (errors.length > 0) return errors;
          const args = {
            schema: enveloped.schema,
            operationName: payload.operationName,
            document,
            variableValues: payload.variables,
          };
          // A subscription lives as long as its socket: it keeps the socket's one context and no
          // per-operation envelop (its events skip envelop, see shared-results.ts).
          if (getOperationAST(document, payload.operationName)?.operation === 'subscription') {
            const contextValue = ctx.extra.context ?? apiContext(principal, clientAddress);
            return { ...args, contextValue, rootValue: { socket, id } satisfies WsRoot };
          }
          return {
            ...args,
            contextValue: await enveloped.contextFactory(),
            rootValue: { execute: enveloped.execute, socket, id } satisfies WsRoot,
          };
        } catch (error) {
          // A parse error, a query limit or anything else refused before execution: an `error`
          // message for this operation only; the socket and its other operations go on.
          return refuse(error);
        }
      },
      // Results graphql-ws still emits itself: queries and mutations sent over the WebSocket.
      onNext: (_ctx, _id, _payload, _args, result) => (result.errors ? nextPayload(result) : undefined),
      onError: (_ctx, _id, _payload, errors) => withoutHttpExtensions(errors),
    },
    {
      logger,
      keepAliveMs: options.keepAliveMs ?? 12_000,
      connectionInitTimeoutMs: options.connectionInitTimeoutMs ?? 3_000,
    },
  );

  // The WebSocket server re-emits the HTTP server's errors. Before the server listens, an error is
  // a failed start (a port in use): `listen` rejects with it and the caller says it in one line.
  wss.on('error', (error) => {
    if (httpServer.listening) logger.error({ err: error }, 'WebSocket server error');
  });

  return {
    httpServer,
    webSockets: wss.clients,
    listen(port, host) {
      return new Promise((resolve, reject) => {
        httpServer.once('error', reject);
        httpServer.listen(port, host, () => {
          httpServer.off('error', reject);
          const address = httpServer.address() as AddressInfo;
          const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
          resolve(`http://${shownHost}:${address.port}${GRAPHQL_PATH}`);
        });
      });
    },
    async close() {
      connections.dispose();
      await ws.dispose();
      await new Promise<void>((resolve) => {
        httpServer.close(() => resolve());
        httpServer.closeAllConnections();
      });
    },
  };
}
