/**
 * Maps an async iterator, passing `return()` through so that leaving the mapped stream ends the
 * source (a subscription that is left must free what it holds).
 */
export function mapAsyncIterator<T, U>(
  source: AsyncIterable<T>,
  map: (value: T) => U | Promise<U>,
): AsyncIterableIterator<U> {
  const iterator = source[Symbol.asyncIterator]();
  return {
    async next() {
      const step = await iterator.next();
      if (step.done) return { done: true, value: undefined };
      const mapped = map(step.value);
      // A value that is already there is not awaited (one promise hop less per event).
      return { done: false, value: mapped instanceof Promise ? await mapped : mapped };
    },
    async return() {
      await iterator.return?.();
      return { done: true, value: undefined };
    },
    async throw(error?: unknown) {
      await iterator.return?.();
      throw error;
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}
