/**
 * Caps open TCP connections per remote address on an HTTP server (WebSockets included: they start
 * as HTTP connections). A connection over the cap is answered `429 Too Many Requests` with a JSON
 * `RATE_LIMITED` error and closed, before any request on it is read.
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';

export interface ConnectionLimitOptions {
  /** Open connections allowed per remote address; 0 turns the cap off. */
  readonly maxPerAddress: number;
}

export interface ConnectionLimit {
  /** Open connections of an address now. */
  count(address: string): number;
  /** Stops counting (the server's listener is removed). */
  dispose(): void;
}

function refusal(max: number): string {
  const body = JSON.stringify({
    errors: [
      {
        message: `too many connections from this address (at most ${max}); close some and retry`,
        extensions: { code: 'RATE_LIMITED', retryAfterSeconds: 1 },
      },
    ],
  });
  return (
    'HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 1\r\n' +
    `Connection: close\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  );
}

export function limitConnections(server: Server, options: ConnectionLimitOptions): ConnectionLimit {
  const open = new Map<string, number>();
  const max = options.maxPerAddress;
  const onConnection = (socket: Socket): void => {
    if (max <= 0) return;
    const address = socket.remoteAddress ?? 'unknown';
    const count = open.get(address) ?? 0;
    if (count >= max) {
      socket.end(refusal(max));
      return;
    }
    open.set(address, count + 1);
    socket.once('close', () => {
      const left = (open.get(address) ?? 1) - 1;
      if (left > 0) open.set(address, left);
      else open.delete(address);
    });
  };
  // Before node:http's own listener, so a refused socket never reaches the HTTP parser.
  server.prependListener('connection', onConnection);
  return {
    count: (address) => open.get(address) ?? 0,
    dispose: () => server.off('connection', onConnection),
  };
}
