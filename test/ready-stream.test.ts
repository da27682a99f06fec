/**
 * Ready streams (read synchronously, or with `next()` derived from that) and the streams built on
 * them: mapped streams and streams that end when a key expires (fake timers).
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { KEY_EXPIRED, untilExpiry } from '../src/auth/expiring-stream.ts';
import { DONE, mapReadyStream, ReadyStream } from '../src/util/ready-stream.ts';

/** A source that holds the latest value pushed to it, as a live subscriber does. */
class LatestValue<T> extends ReadyStream<T> {
  #value: { v: T } | null = null;
  #listener: (() => void) | null = null;
  ended = false;
  returned = 0;

  push(v: T): void {
    this.#value = { v };
    this.#listener?.();
  }
  end(): void {
    this.ended = true;
    this.#listener?.();
  }
  read(): IteratorResult<T> | undefined {
    const held = this.#value;
    if (held) {
      this.#value = null;
      return { done: false, value: held.v };
    }
    return this.ended ? DONE : undefined;
  }
  onReadable(listener: () => void): void {
    this.#listener = listener;
  }
  async return(): Promise<IteratorResult<T>> {
    this.returned++;
    this.end();
    return DONE;
  }
}

afterEach(() => {
  vi.useRealTimers();
});

describe('ready streams', () => {
  it('read synchronously: an item when ready, undefined when not, done once ended', () => {
    const source = new LatestValue<number>();
    const seen: (IteratorResult<number> | undefined)[] = [];
    source.onReadable(() => seen.push(source.read()));
    expect(source.read()).toBeUndefined();
    source.push(1);
    source.push(2);
    source.end();
    expect(seen).toEqual([{ done: false, value: 1 }, { done: false, value: 2 }, DONE]);
    expect(source.read()).toBe(DONE);
  });

  it('next() waits for the listener, keeps only what was read, and resolves as done on return()', async () => {
    const source = new LatestValue<string>();
    const first = source.next();
    source.push('a');
    await expect(first).resolves.toEqual({ done: false, value: 'a' });
    source.push('b');
    source.push('c'); // replaces b: a ready stream holds the latest
    await expect(source.next()).resolves.toEqual({ done: false, value: 'c' });
    const pending = source.next();
    await source.return();
    await expect(pending).resolves.toBe(DONE);
  });

  it('a mapped stream maps what it reads; next() awaits a promise item; return() leaves the source', async () => {
    const source = new LatestValue<number>();
    const mapped = mapReadyStream(source, (n) => (n % 2 === 0 ? n * 10 : Promise.resolve(n * 100)));
    source.push(2);
    expect(mapped.read()).toEqual({ done: false, value: 20 });
    source.push(3);
    const promised = mapped.read();
    expect(promised?.value).toBeInstanceOf(Promise);
    await expect(promised?.value).resolves.toBe(300);
    source.push(5);
    await expect(mapped.next()).resolves.toEqual({ done: false, value: 500 });
    await mapped.return();
    expect(source.returned).toBe(1);
    expect(mapped.read()).toBe(DONE);
  });
});

describe('untilExpiry', () => {
  it('without an expiry, is the source itself', () => {
    const source = new LatestValue<number>();
    expect(untilExpiry(source, null)).toBe(source);
  });

  it('a synchronous reader gets KEY_EXPIRED once, then the end, and the source is left', () => {
    vi.useFakeTimers({ now: 0 });
    const source = new LatestValue<number>();
    const stream = untilExpiry(source, 1_000);
    const seen: unknown[] = [];
    const drain = () => {
      for (let step = stream.read(); step; step = stream.read()) {
        seen.push(step.done ? 'done' : step.value);
        if (step.done) return;
      }
    };
    stream.onReadable(drain);
    source.push(1);
    vi.advanceTimersByTime(999);
    expect(seen).toEqual([1]);
    vi.advanceTimersByTime(1);
    expect(seen).toEqual([1, KEY_EXPIRED, 'done']);
    expect(source.returned).toBe(1);
    source.push(2); // the source is left: nothing more reaches the reader
    expect(seen).toEqual([1, KEY_EXPIRED, 'done']);
  });

  it('an async reader gets the items, then KEY_EXPIRED, then done; an expiry in the past fires at once', async () => {
    vi.useFakeTimers({ now: 10_000 });
    const source = new LatestValue<number>();
    const stream = untilExpiry(source, 12_000);
    source.push(7);
    await expect(stream.next()).resolves.toEqual({ done: false, value: 7 });
    const waiting = stream.next();
    vi.advanceTimersByTime(2_000);
    await expect(waiting).resolves.toEqual({ done: false, value: KEY_EXPIRED });
    await expect(stream.next()).resolves.toBe(DONE);

    const late = untilExpiry(new LatestValue<number>(), 5_000);
    await expect(late.next()).resolves.toEqual({ done: false, value: KEY_EXPIRED });
  });

  it('ends quietly when the source ends first, and return() stops the timer', async () => {
    vi.useFakeTimers({ now: 0 });
    const source = new LatestValue<number>();
    const stream = untilExpiry(source, 1_000);
    source.end();
    await expect(stream.next()).resolves.toBe(DONE);
    const other = untilExpiry(new LatestValue<number>(), 1_000);
    await other.return();
    expect(vi.getTimerCount()).toBe(0);
  });
});
