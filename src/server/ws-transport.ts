/**
 * graphql-ws on `ws` sockets: this server's own adapter around graphql-ws's transport-free server
 * (`makeServer`), in place of graphql-ws's `use/ws`, holding less per socket and keeping a client's
 * mistakes the client's.
 *
 * ## Per socket
 * graphql-ws's connection context, whose `extra` holds the socket, the client's address and (after
 * `connection_init`) its principal: not the upgrade request, which `use/ws` keeps for the socket's
 * lifetime. A message is handed on as a string and its buffer is not held while the operation it
 * starts runs. One timer pings every socket instead of a timer per socket.
 *
 * ## Keep-alive
 * Every `keepAliveMs`, a socket that has not answered the previous ping is terminated, the others
 * are pinged: a dead peer is dropped within two intervals.
 *
 * ## A client's mistakes
 * - A message only a server sends (`next`, `error`, `connection_ack`) closes the socket with 4400
 *   Bad Request, as graphql-ws does for any other invalid message (graphql-ws itself would throw,
 *   and the socket would close with 4500 as if the server had failed).
 * - A socket error the client caused (`WS_ERR_*`: a frame over the size limit, a malformed frame) is
 *   logged at debug; `ws` closes that socket. Any other socket error, or a failure inside
 *   graphql-ws, is logged as an error and closes the socket with 4500 Internal Server Error.
 */
import type { IncomingMessage } from 'node:http';
import { CloseCode, handleProtocols, makeServer, type ServerOptions } from 'graphql-ws';
import type { Logger } from 'pino';
import type { RawData, WebSocket, WebSocketServer } from 'ws';
import type { ApiContext } from '../api/context.ts';
import type { Principal } from '../auth/scope.ts';

/** What graphql-ws's context carries for each socket (`ctx.extra`). */
export interface WsExtra {
  readonly socket: WebSocket;
  /** The client's address, read at the upgrade. */
  readonly clientAddress: string | undefined;
  /** Who opened the socket, set at `connection_init`. */
  principal?: Principal;
  /** The context of the socket's subscriptions (they live as long as it), set with `principal`. */
  context?: ApiContext;
}

export interface WsTransportOptions {
  readonly logger: Logger;
  /** Time a client has to send `connection_init`, in ms; 0 waits for ever. */
  readonly connectionInitTimeoutMs: number;
  /** Ping interval in ms; 0 disables keep-alive. */
  readonly keepAliveMs: number;
}

export interface WsTransport {
  /** Closes every socket with 1001 Going Away, stops the keep-alive and the WebSocket server. */
  dispose(): Promise<void>;
}

/** Messages only a server sends in the graphql-transport-ws protocol. */
const SERVER_ONLY = new Set(['next', 'error', 'connection_ack']);

function messageType(text: string): unknown {
  try {
    return (JSON.parse(text) as { type?: unknown } | null)?.type;
  } catch {
    return undefined; // graphql-ws closes with 4400 itself
  }
}

/**
 * A `ws` socket as graphql-ws's transport-free server sees it. Its methods are shared by every
 * socket, and so are the socket's event listeners (below): per socket there is this one object.
 */
class GraphqlWsSocket {
  /** graphql-ws's handler of the socket's messages, set by `onMessage`. */
  handle: ((data: string) => Promise<void>) | null = null;
  /** graphql-ws's end of the connection, set once the socket is opened. */
  closed: ((code?: number, reason?: string) => Promise<void>) | null = null;
  /** Closes the socket if `connection_init` does not come in time; cleared when it comes. */
  initTimer: NodeJS.Timeout | null = null;

  constructor(readonly socket: WebSocket) {}

  get protocol(): string {
    return this.socket.protocol;
  }

  send(data: string): Promise<void> {
    const { socket } = this;
    return new Promise<void>((resolve, reject) => {
      if (socket.readyState !== socket.OPEN) return resolve();
      socket.send(data, (error) => (error ? reject(error) : resolve()));
    });
  }

  close(code?: number, reason?: string): void {
    this.socket.close(code, reason);
  }

  onMessage(handle: (data: string) => Promise<void>): void {
    this.handle = handle;
  }
}

export function serveGraphqlWs(
  wss: WebSocketServer,
  serverOptions: ServerOptions<Record<string, unknown> | undefined, WsExtra>,
  options: WsTransportOptions,
): WsTransport {
  const { logger, connectionInitTimeoutMs } = options;
  const transports = new WeakMap<WebSocket, GraphqlWsSocket>();
  // The wait for `connection_init` is kept here, as a timer dropped once the message comes
  // (graphql-ws's own keeps its timer for the socket's lifetime).
  const server = makeServer({
    ...serverOptions,
    connectionInitWaitTimeout: 0,
    onConnect: (ctx) => {
      const transport = transports.get(ctx.extra.socket);
      if (transport?.initTimer) clearTimeout(transport.initTimer);
      if (transport) transport.initTimer = null;
      return serverOptions.onConnect?.(ctx);
    },
  });
  wss.options.handleProtocols = handleProtocols;
  /** Sockets that have not answered the last ping. */
  const unanswered = new WeakSet<WebSocket>();

  const fail = (socket: WebSocket, error: unknown, what: string): void => {
    logger.error({ err: error }, what);
    socket.close(CloseCode.InternalServerError, 'Internal server error');
  };

  // The listeners every socket shares (`this` is the socket).
  function onMessage(this: WebSocket, data: RawData): void {
    const handle = transports.get(this)?.handle;
    if (!handle) return;
    const text = String(data);
    const type = messageType(text);
    if (typeof type === 'string' && SERVER_ONLY.has(type)) {
      this.close(CloseCode.BadRequest, `Invalid message received: "${type}" is sent by servers only`);
      return;
    }
    handle(text).catch((error: unknown) => fail(this, error, 'graphql-ws message handling failed'));
  }
  function onError(this: WebSocket, error: Error & { code?: unknown }): void {
    if (typeof error.code === 'string' && error.code.startsWith('WS_ERR_')) {
      logger.debug({ err: error }, 'WebSocket protocol error from a client');
    } else fail(this, error, 'WebSocket socket error');
  }
  function onPong(this: WebSocket): void {
    unanswered.delete(this);
  }
  function onClose(this: WebSocket, code: number, reason: Buffer): void {
    const transport = transports.get(this);
    if (transport?.initTimer) clearTimeout(transport.initTimer);
    void transport?.closed?.(code, String(reason));
  }

  wss.on('connection', (socket: WebSocket, request: IncomingMessage) => {
    const transport = new GraphqlWsSocket(socket);
    transports.set(socket, transport);
    socket.on('error', onError);
    socket.on('pong', onPong);
    socket.on('message', onMessage);
    socket.on('close', onClose);
    if (connectionInitTimeoutMs > 0) {
      transport.initTimer = setTimeout(() => {
        transport.initTimer = null;
        socket.close(CloseCode.ConnectionInitialisationTimeout, 'Connection initialisation timeout');
      }, connectionInitTimeoutMs);
    }
    transport.closed = server.opened(transport, {
      socket,
      clientAddress: request.socket.remoteAddress,
    } satisfies WsExtra);
  });

  const keepAlive =
    options.keepAliveMs > 0
      ? setInterval(() => {
          for (const socket of wss.clients) {
            if (unanswered.has(socket)) {
              socket.terminate();
              continue;
            }
            if (socket.readyState !== socket.OPEN) continue;
            unanswered.add(socket);
            socket.ping();
          }
        }, options.keepAliveMs)
      : null;
  keepAlive?.unref();

  return {
    async dispose() {
      if (keepAlive) clearInterval(keepAlive);
      for (const socket of wss.clients) socket.close(1001, 'Going away');
      await new Promise<void>((resolve, reject) => {
        wss.close((error) => (error ? reject(error) : resolve()));
      });
    },
  };
}
