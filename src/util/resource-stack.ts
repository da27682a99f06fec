/**
 * Resources acquired one after another, released in reverse order: on a failure part-way through
 * start-up as on close, so nothing acquired before the failure is left open. Each release runs
 * even when an earlier one failed; the first failure is rethrown after all have run.
 * (`AsyncDisposableStack` does this from Node 24 on; this is its subset for Node 20 and 22.)
 */
export class ResourceStack {
  #releases: (() => unknown)[] = [];
  #closing: Promise<void> | null = null;

  /** Registers `release` to run at `close`, before everything registered earlier. */
  defer(release: () => unknown): void {
    if (this.#closing) throw new Error('the resource stack is closed');
    this.#releases.push(release);
  }

  /** Registers `value`'s release and returns `value`. */
  use<T>(value: T, release: (value: T) => unknown): T {
    this.defer(() => release(value));
    return value;
  }

  /** Releases everything, last acquired first; the same promise on every call. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      let failure: { error: unknown } | null = null;
      for (const release of this.#releases.splice(0).reverse()) {
        try {
          await release();
        } catch (error) {
          failure ??= { error };
        }
      }
      if (failure) throw failure.error;
    })();
    return this.#closing;
  }
}
