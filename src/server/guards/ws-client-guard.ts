/**
 * A WebSocket client's protocol mistakes are the client's, not the server's. graphql-ws answers a
 * client that sends a server-only message (`next`, `error`, `connection_ack`) by throwing, closing
 * with 4500 Internal Server Error and printing an internal error, and prints every socket error
 * (a frame over the size limit) likewise. This guard, installed on each socket after graphql-ws's
 * own listeners, closes such a socket with 4400 Bad Request as graphql-ws does for any other
 * invalid message, and logs the socket errors a client causes at debug level.
 */
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';

/** Messages only a server sends in the graphql-transport-ws protocol. */
const SERVER_ONLY = new Set(['next', 'error', 'connection_ack']);

type Listener = (...args: unknown[]) => void;

function messageType(data: unknown): unknown {
  try {
    return (JSON.parse(String(data)) as { type?: unknown } | null)?.type;
  } catch {
    return undefined; // graphql-ws closes with 4400 itself
  }
}

export function guardClientSocket(socket: WebSocket, logger: Logger): void {
  const onError = socket.listeners('error') as Listener[];
  socket.removeAllListeners('error');
  socket.on('error', (error: Error & { code?: unknown }) => {
    if (typeof error.code === 'string' && error.code.startsWith('WS_ERR_')) {
      logger.debug({ err: error }, 'WebSocket protocol error from a client');
    } else for (const listener of onError) listener.call(socket, error);
  });

  const onMessage = socket.listeners('message') as Listener[];
  socket.removeAllListeners('message');
  socket.on('message', (data: unknown, isBinary: unknown) => {
    const type = messageType(data);
    if (typeof type === 'string' && SERVER_ONLY.has(type)) {
      socket.close(4400, `Invalid message received: "${type}" is sent by servers only`);
      return;
    }
    for (const listener of onMessage) listener.call(socket, data, isBinary);
  });
}
