/**
 * The WebSocket hot path of subscriptions: an event's `next` frame is written straight to the
 * socket, its payload serialized once per result and shared by every subscriber of that result
 * (the shared-results plugin hands them all the same object). Each subscriber's frame is its
 * operation id spliced around the shared payload: byte for byte what graphql-ws would send
 * (`{"id":...,"type":"next","payload":...}`), so a graphql-ws client sees nothing different.
 *
 * ## The writer, per subscription
 * The events are a ready stream (`util/ready-stream.ts`), read synchronously: when the stream says
 * a result is ready (from inside the topic's publication), the writer reads it and writes its
 * frame at once, with no promise or async frame per event. States:
 * - `idle`: nothing being written; a ready result is read and written at once -> `writing`.
 * - `writing`: one frame handed to the socket; newer results wait in the stream, which keeps only
 *   the latest (a slow consumer costs one pending view, never a queue). When the socket has
 *   written the frame -> `idle`, and whatever is ready now is written.
 * - `ended`: the stream ended (or was left), or writing failed (the operation then ends with that
 *   error, graphql-ws sends it); nothing more is written.
 * A result that is a promise (asynchronous execution) is awaited in `writing`.
 *
 * graphql-ws keeps everything else (connection, subscribe, validation, errors, `complete`): the
 * iterator handed back to it yields nothing and ends when the events end, so graphql-ws then sends
 * `complete` after the last frame.
 */
import type { Writable } from 'node:stream';
import type { ExecutionResult } from 'graphql';
import type { WebSocket } from 'ws';
import { DONE, type ReadyStream } from '../util/ready-stream.ts';

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

const TEXT = { binary: false } as const;
const CLOSING_BRACE = 0x7d;

/** Copies the message `head + payload + "}"` into `target` from `at` to its end. */
function copyMessage(target: Buffer, at: number, head: Buffer, payload: Buffer): Buffer {
  head.copy(target, at);
  payload.copy(target, at + head.length);
  target[target.length - 1] = CLOSING_BRACE;
  return target;
}

/** The message alone, for `ws` to frame. */
const message = (head: Buffer, payload: Buffer): Buffer =>
  copyMessage(Buffer.allocUnsafe(head.length + payload.length + 1), 0, head, payload);

/**
 * The same message as one complete WebSocket frame, as `ws` would write it for a server (RFC 6455
 * section 5.2: FIN, text opcode, unmasked, 7, 16 or 64-bit length), in one buffer: one write,
 * one copy, nothing else allocated.
 */
export function wireFrame(head: Buffer, payload: Buffer): Buffer {
  const length = head.length + payload.length + 1;
  const headerLength = length < 126 ? 2 : length < 65_536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(headerLength + length);
  frame[0] = 0x81;
  if (length < 126) {
    frame[1] = length;
  } else if (length < 65_536) {
    frame[1] = 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 127;
    frame.writeUInt32BE(Math.floor(length / 2 ** 32), 2);
    frame.writeUInt32BE(length >>> 0, 6);
  }
  return copyMessage(frame, headerLength, head, payload);
}

/**
 * The TCP stream under a `ws` socket, when frames may be written to it directly: `ws` writes each
 * frame of its own synchronously and whole when no extension (compression) is negotiated, so a
 * whole frame written beside them never splits one of theirs. `_socket` is `ws`'s field for it.
 */
function streamOf(socket: WebSocket): Writable | null {
  if (socket.extensions !== '') return null;
  const stream = (socket as unknown as { _socket?: Writable })._socket;
  return stream && typeof stream.write === 'function' ? stream : null;
}

class FrameWriter implements AsyncIterableIterator<never> {
  #state: 'idle' | 'writing' | 'ended' = 'idle';
  readonly #head: Buffer;
  /** Where whole frames go, or null when `ws` must frame them (see `streamOf`). */
  readonly #stream: Writable | null;
  /** Resolves graphql-ws's wait once the events ended. */
  readonly #ended: Promise<IteratorResult<never>>;
  #resolveEnded!: (result: IteratorResult<never>) => void;
  #rejectEnded!: (error: unknown) => void;

  constructor(
    private readonly events: ReadyStream<Result>,
    private readonly socket: WebSocket,
    id: string,
    private readonly prepare: (result: ExecutionResult) => ExecutionResult,
  ) {
    this.#head = Buffer.from(`{"id":${JSON.stringify(id)},"type":"next","payload":`);
    this.#stream = streamOf(socket);
    this.#ended = new Promise((resolve, reject) => {
      this.#resolveEnded = resolve;
      this.#rejectEnded = reject;
    });
    events.onReadable(this.#pump);
    this.#pump();
  }

  /**
   * Writes whatever is ready, one frame at a time (bound: it is the stream's listener). It runs
   * inside a topic's publication, so a failure ends this operation alone (graphql-ws sends the
   * error) and never reaches the other subscribers.
   */
  readonly #pump = (): void => this.#run();

  /** Writes `first` (a result read before), then whatever is ready; a failure ends the operation. */
  #run(first?: ExecutionResult): void {
    try {
      if (first) this.#write(first);
      this.#drain();
    } catch (error) {
      this.#fail(error);
    }
  }

  #drain(): void {
    while (this.#state === 'idle') {
      const step = this.events.read();
      if (!step) return;
      if (step.done) {
        this.#end();
        return;
      }
      const result = step.value;
      if (result instanceof Promise) {
        this.#state = 'writing';
        // A failed execution ends the operation with an error (graphql-ws sends it).
        result.then(
          (value) => this.#writeLater(value),
          (error: unknown) => this.#fail(error),
        );
        return;
      }
      this.#write(result);
    }
  }

  #fail(error: unknown): void {
    if (this.#state === 'ended') return;
    this.#state = 'ended';
    this.#rejectEnded(error);
    void this.events.return();
  }

  #write(result: ExecutionResult): void {
    // A closed socket takes no frame; graphql-ws ends the subscription when it sees the close.
    if (this.socket.readyState !== this.socket.OPEN) return;
    const payload = payloadBytes(result, this.prepare);
    this.#state = 'writing';
    const stream = this.#stream;
    if (stream) stream.write(wireFrame(this.#head, payload), this.#written);
    else this.socket.send(message(this.#head, payload), TEXT, this.#written);
  }

  readonly #written = (): void => {
    if (this.#state !== 'writing') return;
    this.#state = 'idle';
    this.#pump();
  };

  #writeLater(result: ExecutionResult): void {
    if (this.#state !== 'writing') return;
    this.#state = 'idle';
    this.#run(result);
  }

  #end(): void {
    if (this.#state === 'ended') return;
    this.#state = 'ended';
    this.#resolveEnded(DONE);
  }

  next(): Promise<IteratorResult<never>> {
    return this.#ended;
  }

  async return(): Promise<IteratorResult<never>> {
    this.#end();
    await this.events.return();
    return DONE;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<never> {
    return this;
  }
}

/**
 * Writes `events` to `socket` as `next` frames for operation `id`; returns the (empty) iterator
 * graphql-ws waits on. `prepare` turns a result into the payload sent (the `onNext` rules).
 */
export function writeFrames(
  events: ReadyStream<Result>,
  socket: WebSocket,
  id: string,
  prepare: (result: ExecutionResult) => ExecutionResult,
): AsyncIterableIterator<never> {
  return new FrameWriter(events, socket, id, prepare);
}
