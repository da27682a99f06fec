/**
 * Your messages, derived (docs/api.md): what the tasks a set of messages created are doing, for
 * one observer or all, read from the store through the index of tasks by message (the cost grows
 * with those tasks only, never with the rest of the queue), and watched until every one is finished.
 *
 * ## Watching
 * A watch listens to the status engine before its first read: a change to any unit the messages'
 * tasks belong to (or any change while a read is in flight, when those units may not be known yet)
 * marks the state dirty, and a dirty state is read again once the read in flight is done. So no
 * change is missed and at most one read runs at a time. States are pushed when they differ from
 * the last one; the stream ends after the first state with every task finished (`done`). A feed
 * reconnect (`status:reloaded`) reads again too, so a watch stays exact across instances.
 */
import { formatWorkUnitKey, type WorkUnitKey } from '../domain/work-unit-key.ts';
import { NotFoundError } from '../errors.ts';
import type { StatusEngine } from '../status/status-engine.ts';
import type { MessageTasks, MessageTasksRequest, Store } from '../store/store.ts';
import { DONE, ReadyStream } from '../util/ready-stream.ts';

/** What some tasks are doing. `done`: none pending or running (a message with no task is done). */
export interface DerivationCounts {
  readonly pending: number;
  readonly inProgress: number;
  readonly completed: number;
  readonly failed: number;
  /** The part of `pending` that failed before and waits to run again. */
  readonly retrying: number;
  readonly total: number;
  readonly done: boolean;
}

export interface MessageDerivation extends DerivationCounts {
  readonly messageId: string;
  readonly sessionId: string;
  readonly seq: number;
}

export interface DerivationState extends DerivationCounts {
  /** One entry per message asked for, in the order asked. */
  readonly messages: readonly MessageDerivation[];
}

const countsOf = (states: readonly { state: string; failures: number }[]): DerivationCounts => {
  let pending = 0;
  let inProgress = 0;
  let completed = 0;
  let failed = 0;
  let retrying = 0;
  for (const { state, failures } of states) {
    if (state === 'pending') {
      pending++;
      if (failures > 0) retrying++;
    } else if (state === 'running') inProgress++;
    else {
      completed++;
      if (state === 'failed') failed++;
    }
  }
  return {
    pending,
    inProgress,
    completed,
    failed,
    retrying,
    total: pending + inProgress + completed,
    done: pending + inProgress === 0,
  };
};

/** The state of a read, messages in the order `ids` names them. */
export function derivationOf(ids: readonly string[], read: MessageTasks): DerivationState {
  const byMessage = new Map<string, { state: string; failures: number }[]>();
  for (const task of read.tasks)
    byMessage.set(task.messageId, [...(byMessage.get(task.messageId) ?? []), task]);
  const found = new Map(read.messages.map((m) => [m.id, m]));
  const messages = ids.flatMap((id) => {
    const message = found.get(id);
    return message
      ? [
          {
            messageId: id,
            sessionId: message.sessionId,
            seq: message.seq,
            ...countsOf(byMessage.get(id) ?? []),
          },
        ]
      : [];
  });
  return { ...countsOf(read.tasks), messages };
}

/** The messages a caller may learn of: what `reaches` refuses is answered as if it did not exist. */
export interface DerivationRequest extends MessageTasksRequest {
  /** Whether the caller reaches a session's messages. @default every session */
  readonly reaches?: ((sessionId: string) => boolean) | undefined;
}

export interface DerivationService {
  /**
   * The state now. Throws `NotFoundError` (argument `messageIds`) for an id not in the workspace or
   * in a session the request does not reach (the same error, so nothing tells them apart).
   */
  read(request: DerivationRequest): Promise<DerivationState>;
  /**
   * The state now, then every change, ending after the first state with every task finished.
   * Rejects like `read` when a message is unknown.
   */
  watch(request: DerivationRequest): Promise<ReadyStream<DerivationState>>;
}

/** One message and a filter of its tasks (what `Message.derivation` asks, batched per tick). */
export interface MessageDerivationKey extends Omit<MessageTasksRequest, 'messageIds'> {
  readonly messageId: string;
}

export function createDerivationService(options: {
  readonly store: Store;
  readonly status: StatusEngine;
}): DerivationService {
  const { store, status } = options;

  async function readWithUnits({ reaches, ...request }: DerivationRequest) {
    const ids = [...new Set(request.messageIds)];
    const read = await store.listMessageTasks({ ...request, messageIds: ids });
    const found = new Set(read.messages.flatMap((m) => (reaches?.(m.sessionId) === false ? [] : [m.id])));
    if (found.size < ids.length) {
      const missing = ids.find((id) => !found.has(id)) ?? '';
      throw new NotFoundError('message', missing, 'messageIds');
    }
    return { state: derivationOf(request.messageIds, read), units: read.tasks.map((t) => t.key) };
  }

  return {
    read: async (request) => (await readWithUnits(request)).state,
    async watch(request) {
      const stream = new DerivationStream(readWithUnits, request, status);
      await stream.started;
      return stream;
    },
  };
}

/**
 * A watch (see "Watching"). Modes: `reading` (a read in flight; every change marks it dirty),
 * `waiting` (listening for a change to its units), `ended` (done, failed or left).
 */
class DerivationStream extends ReadyStream<DerivationState> {
  private mode: 'reading' | 'waiting' | 'ended' = 'reading';
  private dirty = true;
  private readonly units = new Set<string>();
  private readonly queue: DerivationState[] = [];
  private last = '';
  private listener: () => void = () => {};
  private readonly unsubscribe: (() => void)[];
  /** Resolves after the first read (rejects when it fails: an unknown message, a store fault). */
  readonly started: Promise<void>;

  constructor(
    private readonly readOnce: (
      request: DerivationRequest,
    ) => Promise<{ state: DerivationState; units: readonly WorkUnitKey[] }>,
    private readonly request: DerivationRequest,
    status: StatusEngine,
  ) {
    super();
    this.unsubscribe = [
      status.events.on('status:changed', (keys) => {
        if (this.mode === 'reading' || keys.some((key) => this.units.has(formatWorkUnitKey(key))))
          this.changed();
      }),
      status.events.on('status:reloaded', () => this.changed()),
    ];
    this.started = this.loop();
  }

  private changed(): void {
    if (this.mode === 'ended') return;
    this.dirty = true;
    if (this.mode === 'waiting') void this.loop().catch(() => this.end());
  }

  /** Reads while dirty; the first call's failure rejects `started`. */
  private async loop(): Promise<void> {
    this.mode = 'reading';
    try {
      while (this.dirty && this.mode === 'reading') {
        this.dirty = false;
        const { state, units } = await this.readOnce(this.request);
        for (const key of units) this.units.add(formatWorkUnitKey(key));
        this.deliver(state);
      }
    } catch (error) {
      this.end();
      throw error;
    }
    if (this.mode === 'reading') this.mode = 'waiting';
  }

  private deliver(state: DerivationState): void {
    if (this.mode === 'ended') return;
    const text = JSON.stringify(state);
    if (text !== this.last) {
      this.last = text;
      this.queue.push(state);
    }
    if (state.done) this.end();
    this.listener();
  }

  private end(): void {
    if (this.mode === 'ended') return;
    this.mode = 'ended';
    for (const off of this.unsubscribe) off();
    this.listener();
  }

  read(): IteratorResult<DerivationState> | undefined {
    const state = this.queue.shift();
    if (state) return { done: false, value: state };
    return this.mode === 'ended' ? DONE : undefined;
  }

  onReadable(listener: () => void): void {
    this.listener = listener;
  }

  async return(): Promise<IteratorResult<DerivationState>> {
    this.queue.length = 0;
    this.end();
    return DONE;
  }
}
