/**
 * Ends a live stream when the key it was opened with expires: the stream yields `KEY_EXPIRED` once
 * (the resolver turns it into an `UNAUTHENTICATED` error event) and then completes, leaving the
 * source stream so its resources are freed.
 */
import { DONE, ReadyStream } from '../util/ready-stream.ts';

/** Yielded once by an expiring stream when its key's time is up. */
export const KEY_EXPIRED: unique symbol = Symbol('key expired');

/** setTimeout's longest delay; longer waits are re-armed in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

const ignore = (): void => {};

export function untilExpiry<T>(
  source: ReadyStream<T>,
  expiresAt: number | null,
  clock: () => number = Date.now,
): ReadyStream<T | typeof KEY_EXPIRED> {
  if (expiresAt === null) return source;
  return new ExpiringStream(source, expiresAt, clock);
}

/** States: `live` -> `expired` (the timer fired; `KEY_EXPIRED` not read yet) -> `ended`. */
class ExpiringStream<T> extends ReadyStream<T | typeof KEY_EXPIRED> {
  #state: 'live' | 'expired' | 'ended' = 'live';
  #timer: NodeJS.Timeout | undefined;
  #listener: (() => void) | null = null;

  constructor(
    private readonly source: ReadyStream<T>,
    private readonly expiresAt: number,
    private readonly clock: () => number,
  ) {
    super();
    this.#arm();
  }

  #arm(): void {
    const left = this.expiresAt - this.clock();
    if (left > 0) {
      this.#timer = setTimeout(() => this.#arm(), Math.min(left, MAX_TIMER_MS));
      return;
    }
    this.#state = 'expired';
    this.#listener?.();
  }

  read(): IteratorResult<T | typeof KEY_EXPIRED> | undefined {
    if (this.#state === 'ended') return DONE;
    if (this.#state === 'expired') {
      // Leave the source without letting its end reach the reader before this value does.
      this.source.onReadable(ignore);
      void this.return();
      return { done: false, value: KEY_EXPIRED };
    }
    const step = this.source.read();
    if (step?.done) clearTimeout(this.#timer);
    return step;
  }

  onReadable(listener: () => void): void {
    this.#listener = listener;
    this.source.onReadable(listener);
  }

  async return(): Promise<IteratorResult<T>> {
    this.#state = 'ended';
    clearTimeout(this.#timer);
    await this.source.return();
    return DONE;
  }
}
