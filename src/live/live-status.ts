/**
 * Live status: turns the status engine's change notifications into per-subscriber streams, with no
 * polling anywhere.
 *
 * ## Topics (multiplexing)
 * Subscriptions with the same filter, coalescing window and breakdown choice share one *topic*.
 * A topic holds its filter hot in the status engine (a `StatusWatch`, read once from the store when
 * the topic is created: `subscribe` resolves then) and computes the status once per change, handing
 * the same view to all its subscribers. A committed change names the work units that moved; each
 * unit feeds at most eight filters, so the topics to wake are found with eight map look-ups,
 * however many topics exist. A filter read again from the store (`status:reloaded`) wakes its
 * topics too.
 *
 * ## Coalescing
 * A topic publishes at most once per window: the first change after a quiet window goes out at
 * once (leading edge), later changes inside the window are folded into one publication when it
 * closes (trailing edge), so the last state is never lost. A window of 0 publishes every change.
 * A publication equal to the topic's previous one is dropped unless a subscriber joined since
 * (its snapshot may differ from what the others were sent).
 *
 * ## Liveness
 * Every view carries the engine's liveness; when it flips (the store cannot be heard, or can again)
 * every topic publishes, so each subscriber learns of an outage, and of its end with an exact view.
 * The same for the number of processes running a worker (`StatusEngine.workers`): a subscriber
 * hears at once that the last one stopped, or that one started.
 *
 * ## Throughput
 * A view may also carry the filter's throughput and time to idle (when its subscribers selected
 * them: `withProgress`), which move with time alone while tasks complete; such topics that last
 * published a rate are looked at again every `progressIntervalMs`.
 *
 * ## Subscribers (bounded memory)
 * A subscriber holds at most one undelivered view: a newer one replaces it. A consumer that stops
 * reading therefore costs one view however much happens, and gets the latest state when it reads
 * again. A view equal to the last one delivered is never delivered (no identical events in a row).
 * With `untilIdle`, the stream ends after delivering a view with nothing pending or running.
 * A subscriber is a ready stream (`util/ready-stream.ts`): the WebSocket frame path reads its views
 * synchronously when told one is pending, so a publication reaches every socket with no promise
 * per subscriber.
 */
import { limits } from '../domain/limits.ts';
import { isIdle } from '../status/counts.ts';
import type { StatusEngine, StatusWatch } from '../status/status-engine.ts';
import { filterKey, filtersFedBy, type StatusChange, type StatusQuery } from '../status/status-filter.ts';
import { DONE, ReadyStream } from '../util/ready-stream.ts';
import { epochNow, type StatusView, sameView } from './status-view.ts';

export interface LiveStatusOptions {
  readonly status: StatusEngine;
  /** Coalescing window when a subscriber does not choose one, in ms. @default 100 */
  readonly windowMs?: number;
  /**
   * How often topics that last published a throughput are looked at again:
   * a rate decays with time alone, without any count changing. @default 1000
   */
  readonly progressIntervalMs?: number;
}

export interface LiveSubscribeOptions {
  /** End the stream once nothing is pending or running (at once if that already holds). */
  readonly untilIdle?: boolean;
  /** This subscriber's coalescing window, from 0 to `limits.coalesceMaxMs`. @default the server's */
  readonly windowMs?: number;
  /** Compute the per-session breakdown with every view (only for filters without a session). */
  readonly withSessions?: boolean;
  /**
   * Carry throughput and time to idle in every view (the subscriber selected them): such a topic
   * also publishes when they move with time alone. Without it, views hold the counts only, so a
   * subscriber never gets an event whose selected fields did not change. @default false
   */
  readonly withProgress?: boolean;
}

/**
 * A subscriber's stream of views (a ready stream: read with `next()`, or synchronously with
 * `read()` and `onReadable()`); `return()` leaves it (and frees the topic when it was the last one).
 */
export type ViewStream = ReadyStream<StatusView>;

export interface LiveStatus {
  /**
   * A stream of views: the current one at once, then one per (coalesced) change. Resolves once the
   * filter's status is known (read from the store when nobody watched it); rejects when it cannot
   * be read.
   */
  subscribe(filter: StatusQuery, options?: LiveSubscribeOptions): Promise<ViewStream>;
  /**
   * Live topics and subscribers, status computations and views delivered to subscribers so far,
   * and views held for subscribers that have not read them yet (at most one each): metrics, leak
   * and bound checks.
   */
  stats(): { topics: number; subscribers: number; computations: number; delivered: number; held: number };
  /** Ends every stream and stops listening. */
  close(): void;
}

export function createLiveStatus(options: LiveStatusOptions): LiveStatus {
  const { status } = options;
  const defaultWindow = options.windowMs ?? 100;
  /** Topics by filter key (one filter may have topics with different windows). */
  const byFilter = new Map<string, Set<Topic>>();
  const topics = new Map<string, Topic>();
  /** Topics whose filter is being read, by topic key (subscribers arriving meanwhile share it). */
  const opening = new Map<string, Promise<Topic>>();
  let subscriberCount = 0;
  let computations = 0;
  let delivered = 0;

  class Topic {
    readonly subscribers = new Set<Subscriber>();
    last: StatusView;
    #lastPublishedAt = Number.NEGATIVE_INFINITY;
    #timer: NodeJS.Timeout | null = null;
    #dirty = false;
    /** When the newest change not yet published was announced. */
    #changedAt = epochNow();

    constructor(
      readonly key: string,
      readonly filterKey: string,
      readonly filter: StatusQuery,
      readonly windowMs: number,
      readonly withSessions: boolean,
      readonly withProgress: boolean,
      readonly watch: StatusWatch,
    ) {
      this.last = this.compute();
    }

    compute(): StatusView {
      computations++;
      const counts = this.watch.counts();
      const progress = this.withProgress ? status.progress(this.filter, counts) : undefined;
      const stamps = {
        changedAt: this.#changedAt,
        publishedAt: epochNow(),
        liveness: status.liveness(),
        workers: status.workers(),
      };
      if (!this.withSessions || this.filter.sessionId !== undefined)
        return { filter: this.filter, counts, progress, ...stamps };
      return { filter: this.filter, counts, progress, sessions: this.watch.sessions(), ...stamps };
    }

    changed(at: number): void {
      this.#changedAt = at;
      if (this.#timer) {
        this.#dirty = true;
        return;
      }
      if (this.windowMs === 0) {
        this.publish();
        return;
      }
      const since = performance.now() - this.#lastPublishedAt;
      if (since >= this.windowMs) {
        this.publish();
        this.#arm(this.windowMs);
      } else {
        this.#dirty = true;
        this.#arm(this.windowMs - since);
      }
    }

    #arm(ms: number): void {
      this.#timer = setTimeout(() => {
        this.#timer = null;
        if (!this.#dirty) return;
        // Timers run on the event loop's cached millisecond clock and may fire a fraction of a
        // millisecond early by performance.now(): never publish twice within one window.
        const remaining = this.#lastPublishedAt + this.windowMs - performance.now();
        if (remaining > 0) {
          this.#arm(Math.ceil(remaining));
          return;
        }
        this.#dirty = false;
        this.publish();
        this.#arm(this.windowMs);
      }, ms);
    }

    /** A subscriber joined since the last publication, with a snapshot the others never saw. */
    joined = false;

    /** Computes and hands out the current view; the window is measured from here. */
    publish(): void {
      this.#lastPublishedAt = performance.now();
      const view = this.compute();
      if (!this.joined && sameView(view, this.last)) return;
      this.last = view;
      this.joined = false;
      for (const subscriber of this.subscribers) subscriber.offer(view);
    }

    dispose(): void {
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = null;
      this.watch.release();
    }
  }

  class Subscriber extends ReadyStream<StatusView> {
    #pending: StatusView | null = null;
    #delivered: StatusView | null = null;
    #listener: (() => void) | null = null;
    #done = false;

    constructor(
      readonly topic: Topic,
      readonly untilIdle: boolean,
      snapshot: StatusView,
    ) {
      super();
      this.#pending = snapshot;
    }

    /** Whether a view waits for this subscriber to read it. */
    get holding(): boolean {
      return this.#pending !== null;
    }

    offer(view: StatusView): void {
      if (this.#done) return;
      if (this.#delivered && sameView(this.#delivered, view)) {
        this.#pending = null;
        return;
      }
      this.#pending = view;
      this.#listener?.();
    }

    read(): IteratorResult<StatusView> | undefined {
      const view = this.#pending;
      if (!view) return this.#done ? DONE : undefined;
      this.#pending = null;
      this.#delivered = view;
      delivered++;
      // The reader reads again after this view and then learns the end: no listener call here.
      if (this.untilIdle && isIdle(view.counts)) this.#finish();
      return { done: false, value: view };
    }

    onReadable(listener: () => void): void {
      this.#listener = listener;
    }

    return(): Promise<IteratorResult<StatusView>> {
      this.#pending = null;
      this.end();
      return Promise.resolve(DONE);
    }

    /** Ends the stream: no more views; the reader is told (a pending `next()` resolves as done). */
    end(): void {
      if (this.#done) return;
      this.#finish();
      this.#listener?.();
    }

    #finish(): void {
      this.#done = true;
      leave(this);
    }
  }

  function leave(subscriber: Subscriber): void {
    const { topic } = subscriber;
    if (!topic.subscribers.delete(subscriber)) return;
    subscriberCount--;
    if (topic.subscribers.size > 0) return;
    topic.dispose();
    topics.delete(topic.key);
    const siblings = byFilter.get(topic.filterKey);
    siblings?.delete(topic);
    if (siblings?.size === 0) byFilter.delete(topic.filterKey);
  }

  const wakeTopics = (filterKeys: Iterable<string>): void => {
    const touched = new Set<Topic>();
    for (const key of filterKeys) {
      const set = byFilter.get(key);
      if (set) for (const topic of set) touched.add(topic);
    }
    const at = epochNow();
    for (const topic of touched) topic.changed(at);
  };
  const onChanged = (units: readonly StatusChange[]): void => {
    if (byFilter.size > 0) wakeTopics(units.flatMap((unit) => filtersFedBy(unit).map(filterKey)));
  };
  const offs = [
    status.events.on('status:changed', onChanged),
    status.events.on('status:reloaded', wakeTopics),
    status.events.on('status:liveness', () => wakeTopics(byFilter.keys())),
    status.events.on('status:workers', () => wakeTopics(byFilter.keys())),
  ];

  /** The topic for these options: an open one, one being opened, or a new one (its filter read). */
  const topicFor = async (
    key: string,
    fKey: string,
    filter: StatusQuery,
    options: { windowMs: number; withSessions: boolean; withProgress: boolean },
  ): Promise<{ topic: Topic; fresh: boolean }> => {
    const open = topics.get(key);
    if (open) return { topic: open, fresh: false };
    let pending = opening.get(key);
    const mine = !pending;
    if (!pending) {
      pending = status.watch(filter, { sessions: options.withSessions }).then((watch) => {
        const topic = new Topic(
          key,
          fKey,
          filter,
          options.windowMs,
          options.withSessions,
          options.withProgress,
          watch,
        );
        topics.set(key, topic);
        let set = byFilter.get(fKey);
        if (!set) {
          set = new Set();
          byFilter.set(fKey, set);
        }
        set.add(topic);
        return topic;
      });
      opening.set(key, pending);
      pending.then(
        () => opening.delete(key),
        () => opening.delete(key),
      );
    }
    return { topic: await pending, fresh: mine };
  };

  // Throughput moves with time alone (it decays to 0 once completions stop): while a topic last
  // published a rate, look at it every interval; it publishes only when its view changed.
  const progressTimer = setInterval(() => {
    const at = epochNow();
    for (const topic of topics.values()) {
      if (topic.withProgress && (topic.last.progress?.throughputPerSecond ?? 0) > 0) topic.changed(at);
    }
  }, options.progressIntervalMs ?? 1_000);
  progressTimer.unref();

  return {
    async subscribe(filter, subscribeOptions = {}) {
      const windowMs = Math.min(
        limits.coalesceMaxMs,
        Math.max(0, subscribeOptions.windowMs ?? defaultWindow),
      );
      const withSessions = subscribeOptions.withSessions === true && filter.sessionId === undefined;
      const withProgress = subscribeOptions.withProgress === true;
      const fKey = filterKey(filter);
      const key = `${fKey}\u0000${windowMs}\u0000${withSessions ? 1 : 0}${withProgress ? 1 : 0}`;
      // A joiner's first view holds every change committed before it subscribed (on PostgreSQL an
      // open topic may not have heard the latest yet): `untilIdle` right after a write must see it.
      // A new topic's read of the store is as of now by itself.
      if (topics.has(key)) await status.sync();
      let opened = await topicFor(key, fKey, filter, { windowMs, withSessions, withProgress });
      // Its last subscriber may have left (and closed it) while this one waited for it.
      while (topics.get(key) !== opened.topic)
        opened = await topicFor(key, fKey, filter, { windowMs, withSessions, withProgress });
      const { topic, fresh } = opened;
      // The opener of a new topic gets its first view, fresh. A joiner of a live topic gets the
      // topic's last view when nothing changed since (one view, so one execution and one
      // serialization, shared with every subscriber that has it); the last one may predate a
      // pending window, so it is checked against a fresh computation.
      let snapshot = topic.last;
      if (!fresh || topic.subscribers.size > 0) {
        const now = topic.compute();
        if (!sameView(now, topic.last)) snapshot = now;
      }
      const subscriber = new Subscriber(topic, subscribeOptions.untilIdle === true, snapshot);
      topic.subscribers.add(subscriber);
      topic.joined = true;
      subscriberCount++;
      return subscriber;
    },

    stats() {
      let held = 0;
      for (const topic of topics.values()) for (const s of topic.subscribers) if (s.holding) held++;
      return { topics: topics.size, subscribers: subscriberCount, computations, delivered, held };
    },

    close() {
      for (const off of offs) off();
      clearInterval(progressTimer);
      for (const topic of [...topics.values()]) {
        for (const subscriber of [...topic.subscribers]) subscriber.end();
      }
    },
  };
}
