/**
 * HTTP and WebSocket on one port and one path (`/graphql`): GraphQL over HTTP and Server-Sent
 * Events through Yoga, GraphQL over WebSocket (`graphql-transport-ws`) through graphql-ws, wired
 * through Yoga's envelop so plugins, error codes and masking apply the same on every transport.
 */
import { createServer as createHttpServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EnvelopArmorPlugin } from '@escape.tech/graphql-armor';
import type { ExecutionArgs, GraphQLError } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import { createYoga } from 'graphql-yoga';
import type { Logger } from 'pino';
import { WebSocketServer } from 'ws';
import type { ApiContext } from '../api/builder.ts';
import { createMaskError, useBodyLimit, useErrorCodes } from '../api/errors.ts';
import { schema } from '../api/schema.ts';
import { createSharedSubscribe, useSharedSubscriptionResults } from '../api/shared-results.ts';
import { GRAPHIQL_DEFAULT_QUERY } from './graphiql.ts';

export interface DeriverServerOptions {
  readonly context: ApiContext;
  readonly logger: Logger;
  /** Largest WebSocket message accepted, in bytes. @default 65536 */
  readonly wsMaxPayload?: number;
  /** Time a WebSocket client has to send `connection_init`, in ms. @default 3000 */
  readonly connectionInitTimeoutMs?: number;
  /** WebSocket keepalive ping interval, in ms (0 disables). @default 12000 */
  readonly keepAliveMs?: number;
  /** Benchmarks only: stamp subscription results with `extensions.changedAt`. @default false */
  readonly stampChanges?: boolean;
  /**
   * Largest HTTP request body, in bytes (by `Content-Length`). The default fits the largest valid
   * `addMessages` call: 100 messages of 65,535 four-byte characters. @default 32 MiB
   */
  readonly maxBodyBytes?: number;
}

export interface DeriverServer {
  readonly httpServer: Server;
  /** The WebSocket side (graphql-transport-ws), for inspection. */
  readonly webSocketServer: WebSocketServer;
  /** Listens and resolves with the GraphQL URL (`http://host:port/graphql`). */
  listen(port: number, host: string): Promise<string>;
  /** Closes WebSocket clients (1001), ends open SSE streams and stops listening. */
  close(): Promise<void>;
}

type EnvelopedRoot = { execute: (args: ExecutionArgs) => unknown };

export function createDeriverServer(options: DeriverServerOptions): DeriverServer {
  const { context, logger } = options;
  const maskError = createMaskError((error) => logger.error({ err: error }, 'internal error'));
  const sharedSubscribe = createSharedSubscribe({ stampChanges: options.stampChanges, maskError });
  const yoga = createYoga({
    schema,
    context: () => context,
    graphqlEndpoint: '/graphql',
    healthCheckEndpoint: '/health',
    landingPage: false,
    graphiql: { title: 'Deriver Live', subscriptionsProtocol: 'WS', defaultQuery: GRAPHIQL_DEFAULT_QUERY },
    // Self-contained GraphiQL (no CDN): its assets are inlined; loaded on the first page view.
    renderGraphiQL: async (graphiqlOptions) =>
      (await import('@graphql-yoga/render-graphiql')).renderGraphiQL(graphiqlOptions),
    maskedErrors: { maskError },
    plugins: [
      // Query limits: depth, aliases, directives, tokens and cost. Field suggestions stay on: the
      // schema is public (GraphiQL), and "did you mean" helps the people writing queries.
      EnvelopArmorPlugin({
        maxDepth: { n: 8 },
        maxAliases: { n: 15 },
        maxTokens: { n: 5_000 },
        costLimit: { maxCost: 5_000 },
        blockFieldSuggestion: { enabled: false },
      }),
      useBodyLimit(options.maxBodyBytes ?? 32 * 2 ** 20),
      useErrorCodes(),
      useSharedSubscriptionResults(sharedSubscribe),
    ],
    logging: {
      debug: (...args: unknown[]) => logger.debug(args.map(String).join(' ')),
      info: (...args: unknown[]) => logger.info(args.map(String).join(' ')),
      warn: (...args: unknown[]) => logger.warn(args.map(String).join(' ')),
      error: (...args: unknown[]) => logger.error(args.map(String).join(' ')),
    },
  });

  const httpServer = createHttpServer(yoga);
  const wss = new WebSocketServer({
    server: httpServer,
    path: yoga.graphqlEndpoint,
    maxPayload: options.wsMaxPayload ?? 64 * 1024,
  });
  const ws = useServer(
    {
      connectionInitWaitTimeout: options.connectionInitTimeoutMs ?? 3_000,
      execute: (args) => (args.rootValue as EnvelopedRoot).execute(args) as never,
      // Events go straight from the shared subscribe function to the socket (see shared-results.ts).
      subscribe: (args) => sharedSubscribe({ ...args, rootValue: undefined }) as never,
      onSubscribe: async (ctx, _id, payload) => {
        const enveloped = yoga.getEnveloped({
          ...ctx,
          req: ctx.extra.request,
          socket: ctx.extra.socket,
          params: payload,
        });
        let document: ReturnType<typeof enveloped.parse>;
        try {
          document = enveloped.parse(payload.query);
        } catch (error) {
          return [error as GraphQLError];
        }
        const errors = enveloped.validate(enveloped.schema, document);
        if (errors.length > 0) return errors;
        return {
          schema: enveloped.schema,
          operationName: payload.operationName,
          document,
          variableValues: payload.variables,
          contextValue: await enveloped.contextFactory(),
          rootValue: { execute: enveloped.execute },
        };
      },
    },
    wss,
    options.keepAliveMs ?? 12_000,
  );

  return {
    httpServer,
    webSocketServer: wss,
    listen(port, host) {
      return new Promise((resolve, reject) => {
        httpServer.once('error', reject);
        httpServer.listen(port, host, () => {
          httpServer.off('error', reject);
          const address = httpServer.address() as AddressInfo;
          const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
          resolve(`http://${shownHost}:${address.port}${yoga.graphqlEndpoint}`);
        });
      });
    },
    async close() {
      await ws.dispose();
      await new Promise<void>((resolve) => {
        httpServer.close(() => resolve());
        httpServer.closeAllConnections();
      });
    },
  };
}
