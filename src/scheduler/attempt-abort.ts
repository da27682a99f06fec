/**
 * One handler call's cancellation. `abort(reason)` ends the call at once for the scheduler
 * (`onAbort`, in a microtask) and aborts its `AbortSignal`; the signal, with its
 * AbortController, is made only when someone reads it (the handler, a rate-limit wait): making
 * one with its listener cost about 3 µs of a no-op task's 35 (docs/benchmarks.md, "Where a task's
 * time goes"), and most handlers never read it.
 *
 * Protocol: `abort` may be called any number of times, before or after `signal` is read; only the
 * first reason counts, and a signal read after the abort is already aborted with it.
 */
export class AttemptAbort {
  readonly #onAbort: (reason: unknown) => void;
  #controller: AbortController | undefined;
  #aborted = false;
  #reason: unknown;

  /** `onAbort` is called once, in a microtask after the first `abort`, with its reason. */
  constructor(onAbort: (reason: unknown) => void) {
    this.#onAbort = onAbort;
  }

  get aborted(): boolean {
    return this.#aborted;
  }

  get reason(): unknown {
    return this.#reason;
  }

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
    queueMicrotask(() => this.#onAbort(reason));
  }
}
