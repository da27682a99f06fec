/**
 * Clients shaped like Apollo Client's, beside the WebSocket frame path: its GraphQLWsLink sends
 * named operations (the document may hold others), with fragments, `__typename` in every selection
 * and `extensions`. Over WebSocket and over SSE each subscriber gets results for its own document
 * (never another subscriber's payload on the same topic), and all see the final state. (Apollo's
 * `multipart/mixed` HTTP subscriptions are not offered: Yoga serves subscriptions over SSE and
 * WebSocket only, and answers them 406, as before the frame path.)
 */
import { createClient } from 'graphql-ws';
import { afterEach, expect, it } from 'vitest';
import WebSocket from 'ws';
import { gate, startTestServer, type TestServer } from './server-helpers.ts';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** What Apollo Client sends: a named operation, a fragment, `__typename` added everywhere. */
const APOLLO_DOCUMENT = `subscription WatchSession($sessionId: ID) {
  deriverStatus(sessionId: $sessionId, coalesceMs: 0) {
    ...Progress
    __typename
  }
}
query Other { deriverStatus { totalWorkUnits __typename } }
fragment Progress on DeriverStatus {
  completedWorkUnits
  totalWorkUnits
  __typename
}`;

const PLAIN = 'subscription { deriverStatus(sessionId: "s", coalesceMs: 0) { completedWorkUnits } }';

/** Reads an SSE body event by event (each `next` event's JSON). */
async function* sseEvents(response: Response): AsyncGenerator<unknown> {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let buffered = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buffered += decoder.decode(value, { stream: true });
    for (let end = buffered.indexOf('\n\n'); end >= 0; end = buffered.indexOf('\n\n')) {
      const event = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      const data = event.split('\n').find((line) => line.startsWith('data: '));
      if (event.startsWith('event: next') && data) yield JSON.parse(data.slice('data: '.length));
    }
  }
}

it('named operations with fragments, __typename and extensions get their own results over WebSocket and SSE', async () => {
  const g = gate();
  server = await startTestServer({ handlers: { representation: g.handler, summary: g.handler } });
  const s = server;
  await s.http('mutation{upsertSession(id:"s",peers:[{peerId:"alice"}]){id}}');
  const wsUrl = s.url.replace('http', 'ws');

  const client = createClient({ url: wsUrl, webSocketImpl: WebSocket });
  const apollo: unknown[] = [];
  const plain: unknown[] = [];
  const errors: unknown[] = [];
  client.subscribe(
    {
      query: APOLLO_DOCUMENT,
      operationName: 'WatchSession',
      variables: { sessionId: 's' },
      extensions: { clientLibrary: { name: '@apollo/client', version: '3.13' } },
    },
    { next: (r) => void apollo.push(r), error: (e) => void errors.push(e), complete: () => {} },
  );
  client.subscribe(
    { query: PLAIN },
    { next: (r) => void plain.push(r), error: (e) => void errors.push(e), complete: () => {} },
  );

  const controller = new AbortController();
  const response = await fetch(s.url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'text/event-stream',
    },
    body: JSON.stringify({
      query: APOLLO_DOCUMENT,
      operationName: 'WatchSession',
      variables: { sessionId: 's' },
    }),
    signal: controller.signal,
  });
  expect(response.headers.get('content-type')).toContain('text/event-stream');
  const viaSse: unknown[] = [];
  const reading = (async () => {
    try {
      for await (const event of sseEvents(response)) viaSse.push(event);
    } catch {
      // aborted at the end
    }
  })();

  await expect.poll(() => [apollo.length, plain.length, viaSse.length]).toEqual([1, 1, 1]);
  await s.http(
    'mutation{addMessages(sessionId:"s",messages:[{peerId:"alice",content:"hi"}]){enqueuedTasks}}',
  );
  g.open();

  const done = {
    data: { deriverStatus: { completedWorkUnits: 1, totalWorkUnits: 1, __typename: 'DeriverStatus' } },
  };
  await expect.poll(() => apollo.at(-1)).toEqual(done);
  await expect.poll(() => viaSse.at(-1)).toEqual(done);
  await expect.poll(() => plain.at(-1)).toEqual({ data: { deriverStatus: { completedWorkUnits: 1 } } });
  // Every event has its own document's shape: never the other subscription's payload.
  for (const result of [...apollo, ...viaSse]) {
    expect(Object.keys((result as { data: { deriverStatus: object } }).data.deriverStatus).sort()).toEqual([
      '__typename',
      'completedWorkUnits',
      'totalWorkUnits',
    ]);
  }
  for (const result of plain) {
    expect(Object.keys((result as { data: { deriverStatus: object } }).data.deriverStatus)).toEqual([
      'completedWorkUnits',
    ]);
  }
  expect(errors).toEqual([]);
  controller.abort();
  await reading;
  await client.dispose();
});
