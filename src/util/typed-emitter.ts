/**
 * A small typed event emitter. Unlike Node's `EventEmitter`, a listener that throws (or rejects)
 * never propagates into the code that emitted: the error goes to `onListenerError`, so a faulty
 * subscriber cannot break a scheduler loop or a store transaction's aftermath.
 */

// biome-ignore lint/suspicious/noExplicitAny: event maps are checked at use sites
export type EventMap = Record<string, any>;
export type Listener<T> = (payload: T) => void | Promise<void>;

export class TypedEmitter<Events extends EventMap> {
  readonly #listeners = new Map<keyof Events, Set<Listener<never>>>();
  readonly #onListenerError: (error: unknown, event: keyof Events) => void;

  constructor(onListenerError?: (error: unknown, event: keyof Events) => void) {
    this.#onListenerError =
      onListenerError ??
      ((error, event) => {
        process.emitWarning(`listener for "${String(event)}" threw: ${String(error)}`);
      });
  }

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    let set = this.#listeners.get(event);
    if (!set) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    set.add(listener as Listener<never>);
    return () => this.off(event, listener);
  }

  off<K extends keyof Events>(event: K, listener: Listener<Events[K]>): void {
    this.#listeners.get(event)?.delete(listener as Listener<never>);
  }

  hasListeners(event: keyof Events): boolean {
    return (this.#listeners.get(event)?.size ?? 0) > 0;
  }

  emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    const set = this.#listeners.get(event);
    if (!set) return;
    for (const listener of set) {
      try {
        const result = (listener as Listener<Events[K]>)(payload);
        if (result && typeof result.then === 'function') {
          result.then(undefined, (error: unknown) => this.#onListenerError(error, event));
        }
      } catch (error) {
        this.#onListenerError(error, event);
      }
    }
  }

  removeAllListeners(): void {
    this.#listeners.clear();
  }
}
