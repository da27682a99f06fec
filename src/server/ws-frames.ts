/**
 * The WebSocket hot path of subscriptions: an event's `next` frame is written straight to the
 * socket, its payload serialized once per result and shared by every subscriber of that result
 * (the shared-results plugin hands them all the same object). Each subscriber's frame is its
 * operation id spliced around the shared payload: byte for byte what graphql-ws would send
 * (`{"id":...,"type":"next","payload":...}`), so a graphql-ws client sees nothing different.
 *
 * graphql-ws keeps everything else (connection, subscribe, validation, errors, `complete`): the
 * iterator handed back to it yields nothing and ends when the events end, so graphql-ws then sends
 * `complete` after the last frame. Backpressure is kept: the next event is taken only when the
 * socket has written the previous frame, so a slow consumer still costs one pending view.
 */
import type { ExecutionResult } from 'graphql';
import type { WebSocket } from 'ws';

type Result = ExecutionResult | Promise<ExecutionResult>;

/**
 * Serialized payloads by result object, UTF-8 encoded: one JSON.stringify and one encoding per topic
 * change, not per subscriber.
 */
const payloads = new WeakMap<object, Buffer>();

function payloadBytes(result: ExecutionResult, prepare: (r: ExecutionResult) => ExecutionResult): Buffer {
  let bytes = payloads.get(result);
  if (bytes === undefined) {
    bytes = Buffer.from(JSON.stringify(prepare(result)));
    payloads.set(result, bytes);
  }
  return bytes;
}

const TAIL = Buffer.from('}');

/** Sends one frame; resolves once the socket wrote it (or at once when the socket is gone). */
function send(socket: WebSocket, frame: Buffer): Promise<void> {
  return new Promise((resolve) => {
    if (socket.readyState !== socket.OPEN) return resolve();
    socket.send(frame, { binary: false }, () => resolve());
  });
}

/**
 * Writes `events` to `socket` as `next` frames for operation `id`; returns the (empty) iterator
 * graphql-ws waits on. `prepare` turns a result into the payload sent (the `onNext` rules).
 */
export function writeFrames(
  events: AsyncIterableIterator<Result>,
  socket: WebSocket,
  id: string,
  prepare: (result: ExecutionResult) => ExecutionResult,
): AsyncIterableIterator<never> {
  const head = Buffer.from(`{"id":${JSON.stringify(id)},"type":"next","payload":`);
  let stopped = false;
  const pumped = (async () => {
    for (;;) {
      const step = await events.next();
      if (step.done || stopped) return;
      const result = step.value instanceof Promise ? await step.value : step.value;
      const payload = payloadBytes(result, prepare);
      await send(socket, Buffer.concat([head, payload, TAIL], head.length + payload.length + 1));
    }
  })();
  const done = { done: true, value: undefined } as IteratorReturnResult<undefined>;
  return {
    [Symbol.asyncIterator]() {
      return this;
    },
    async next() {
      await pumped;
      return done as IteratorResult<never>;
    },
    async return() {
      stopped = true;
      await events.return?.();
      return done as IteratorResult<never>;
    },
  };
}
