/**
 * Ready streams: async iterators whose items can also be taken synchronously, so that a
 * transport's hot path writes each item from the call that produced it, with no promise, closure
 * or async frame per item (the WebSocket frame path, `ws-frames.ts`).
 *
 * ## Protocol (one reader per stream)
 * - `read()` returns the next item when one is ready, `{ done: true }` once the stream has ended
 *   (and ever after), and `undefined` when nothing is ready yet.
 * - `onReadable(listener)` sets the stream's one listener, called whenever `read()` may return
 *   something new (an item, or the end). It may be called from inside the producer's own call (a
 *   topic handing a view to all its subscribers), so it must be quick and must not throw.
 * - `return()` leaves the stream and frees its source; a pending `next()` then resolves as done.
 *
 * `next()`, the async iterator protocol (SSE through Yoga, tests), is derived from `read()` and
 * `onReadable()` here, once for every stream: a stream is read one way or the other, not both.
 */

/** The result that ends a stream, shared (frozen). */
export const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

const ignore = (): void => {};

export abstract class ReadyStream<T> implements AsyncIterableIterator<T> {
  /** The next item if one is ready, `{ done: true }` once ended, `undefined` if nothing is ready. */
  abstract read(): IteratorResult<T> | undefined;
  /** Sets the one listener called when `read()` may return something new. */
  abstract onReadable(listener: () => void): void;
  /** Leaves the stream; its source is freed. */
  abstract return(): Promise<IteratorResult<T>>;

  next(): Promise<IteratorResult<T>> {
    const ready = this.read();
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve) => {
      this.onReadable(() => {
        const step = this.read();
        if (!step) return;
        this.onReadable(ignore);
        resolve(step);
      });
    });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }
}

export function isReadyStream(value: unknown): value is ReadyStream<unknown> {
  return value instanceof ReadyStream;
}

/**
 * `source` with `map` applied to each item as it is read. A map that returns a promise (an
 * asynchronous execution) gives promise items to `read()`; `next()` awaits them.
 */
export function mapReadyStream<T, U>(
  source: ReadyStream<T>,
  map: (value: T) => U | Promise<U>,
): ReadyStream<U | Promise<U>> {
  return new MappedStream(source, map);
}

class MappedStream<T, U> extends ReadyStream<U | Promise<U>> {
  constructor(
    private readonly source: ReadyStream<T>,
    private readonly map: (value: T) => U | Promise<U>,
  ) {
    super();
  }

  read(): IteratorResult<U | Promise<U>> | undefined {
    const step = this.source.read();
    if (!step || step.done) return step as IteratorResult<U> | undefined;
    return { done: false, value: this.map(step.value) };
  }

  onReadable(listener: () => void): void {
    this.source.onReadable(listener);
  }

  override async next(): Promise<IteratorResult<U>> {
    const step = await super.next();
    if (step.done || !(step.value instanceof Promise)) return step as IteratorResult<U>;
    return { done: false, value: await step.value };
  }

  async return(): Promise<IteratorResult<U>> {
    await this.source.return();
    return DONE;
  }
}
