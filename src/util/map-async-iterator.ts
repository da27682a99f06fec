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
      return step.done ? { done: true, value: undefined } : { done: false, value: await map(step.value) };
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
