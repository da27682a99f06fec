/**
 * One GraphQL operation sent the way a real client would, over each transport the server offers,
 * reduced to what the auth and security tests compare: `OK` (data, no errors), the first error's
 * `extensions.code`, or `close:<code>` when a WebSocket was closed on the client.
 */
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

export type Transport = 'http' | 'sse' | 'ws';

export interface SentOperation {
  readonly query: string;
  readonly variables?: Record<string, unknown>;
  /** A bearer token; omitted sends no credentials. */
  readonly token?: string;
  /** Extra HTTP headers (HTTP and SSE) or WebSocket upgrade headers. */
  readonly headers?: Record<string, string>;
}

export interface Outcome {
  /** `OK`, an error code, or `close:<code>`. */
  readonly code: string;
  /** HTTP status (HTTP and SSE only). */
  readonly status?: number;
  readonly message?: string;
  readonly data?: unknown;
}

interface WireResult {
  data?: unknown;
  errors?: { message: string; extensions?: { code?: string } }[];
}

const outcomeOf = (result: WireResult, status?: number): Outcome => {
  const error = result.errors?.[0];
  if (error) return { code: String(error.extensions?.code ?? 'NO_CODE'), status, message: error.message };
  return { code: 'OK', status, data: result.data };
};

const authHeaders = (op: SentOperation): Record<string, string> => ({
  ...(op.token ? { authorization: `Bearer ${op.token}` } : {}),
  ...op.headers,
});

export async function send(transport: Transport, url: string, op: SentOperation): Promise<Outcome> {
  switch (transport) {
    case 'http': {
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...authHeaders(op) },
        body: JSON.stringify({ query: op.query, variables: op.variables }),
      });
      return outcomeOf((await response.json()) as WireResult, response.status);
    }
    case 'sse': {
      const controller = new AbortController();
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...authHeaders(op) },
        body: JSON.stringify({ query: op.query, variables: op.variables }),
        signal: controller.signal,
      });
      if (!response.headers.get('content-type')?.includes('text/event-stream')) {
        return outcomeOf((await response.json()) as WireResult, response.status);
      }
      // The first `next` event decides; a live subscription is then left.
      const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) throw new Error(`SSE stream ended without an event: ${buffer}`);
          buffer += value;
          const event = buffer.split('\n\n').find((block) => block.includes('event: next'));
          const data = event
            ?.split('\n')
            .find((line) => line.startsWith('data: '))
            ?.slice(6);
          if (data) return outcomeOf(JSON.parse(data) as WireResult, response.status);
        }
      } finally {
        controller.abort();
        await reader.cancel().catch(() => {});
      }
    }
    case 'ws': {
      const client = createClient({
        url: url.replace(/^http/, 'ws'),
        webSocketImpl: class extends WebSocket {
          constructor(address: string, protocols?: string | string[]) {
            super(address, protocols, { headers: op.headers });
          }
        },
        connectionParams: op.token ? { authorization: `Bearer ${op.token}` } : {},
        retryAttempts: 0,
        lazy: true,
      });
      try {
        return await new Promise<Outcome>((resolve) => {
          const dispose = client.subscribe<unknown>(
            { query: op.query, variables: op.variables },
            {
              next: (result) => {
                resolve(outcomeOf(result as WireResult));
                dispose();
              },
              error: (error) => {
                if (Array.isArray(error)) resolve(outcomeOf({ errors: error }));
                else if ((error as { code?: number }).code !== undefined) {
                  const close = error as { code: number; reason: string };
                  resolve({ code: `close:${close.code}`, message: close.reason });
                } else resolve({ code: 'CLIENT_ERROR', message: String(error) });
              },
              complete: () => resolve({ code: 'COMPLETED_WITHOUT_RESULT' }),
            },
          );
        });
      } finally {
        await client.dispose();
      }
    }
  }
}

/** The four moving counts of a status, as the many-instance tests compare them. */
export type Counts = {
  totalWorkUnits: number;
  completedWorkUnits: number;
  pendingWorkUnits: number;
  inProgressWorkUnits: number;
};
export const COUNTS = 'totalWorkUnits completedWorkUnits pendingWorkUnits inProgressWorkUnits';

/** The workspace's status as `url` answers it over HTTP. */
export const statusOf = async (url: string): Promise<Counts> =>
  ((await send('http', url, { query: `{deriverStatus{${COUNTS}}}` })).data as { deriverStatus: Counts })
    .deriverStatus;
