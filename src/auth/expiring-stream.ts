/**
 * Ends a live stream when the key it was opened with expires: the stream yields `KEY_EXPIRED` once
 * (the resolver turns it into an `UNAUTHENTICATED` error event) and then completes, leaving the
 * source stream so its resources are freed.
 */

/** Yielded once by an expiring stream when its key's time is up. */
export const KEY_EXPIRED: unique symbol = Symbol('key expired');

/** setTimeout's longest delay; longer waits are re-armed in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export function untilExpiry<T>(
  source: AsyncIterableIterator<T>,
  expiresAt: number | null,
  clock: () => number = Date.now,
): AsyncIterableIterator<T | typeof KEY_EXPIRED> {
  if (expiresAt === null) return source;
  let timer: NodeJS.Timeout | undefined;
  let finished = false;
  const expired = new Promise<IteratorResult<typeof KEY_EXPIRED>>((resolve) => {
    const arm = (): void => {
      const left = expiresAt - clock();
      if (left <= 0) resolve({ done: false, value: KEY_EXPIRED });
      else timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
    };
    arm();
  });
  const finish = async (): Promise<IteratorResult<T>> => {
    finished = true;
    clearTimeout(timer);
    await source.return?.();
    return { done: true, value: undefined };
  };
  return {
    [Symbol.asyncIterator]() {
      return this;
    },
    async next() {
      if (finished) return { done: true, value: undefined };
      const result = await Promise.race([source.next(), expired]);
      if (result.value === KEY_EXPIRED) {
        await finish();
        return result;
      }
      if (result.done) clearTimeout(timer);
      return result;
    },
    return: finish,
  };
}
