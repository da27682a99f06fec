/**
 * Moves the webhook events an attached Honcho's commits wrote (`queue.empty`, `session.idle`; see
 * `attach.sql`) into this service's own outbox, from which the webhook dispatcher delivers them,
 * signed and retried, to the workspace's endpoints (a workspace with none gets nothing written). At least once: an event is deleted from
 * Honcho's table in the transaction that took it, after it was written here; a failure between the
 * two writes it here again next time (deliveries carry an event id for deduplication anyway).
 *
 * ## When it runs
 * After every change Honcho's commits send (the events are written by those commits), at most one
 * pass at a time (`coalescedRuns`: a change during a pass runs one more), and every `intervalMs` as
 * a fallback.
 */
import type { Store } from '../store/store.ts';
import { coalescedRuns } from '../util/coalesced-runs.ts';
import type { HonchoSource } from './honcho-source.ts';

export interface HonchoEventRelayOptions {
  readonly source: HonchoSource;
  readonly store: Pick<Store, 'enqueueWebhookEvent' | 'listWebhooks'>;
  /** Called after events were written here (wakes the dispatcher). */
  readonly onRelayed: () => void;
  readonly onError: (error: unknown) => void;
  /** @default 5000 */
  readonly intervalMs?: number;
  /** Events taken per transaction. @default 500 */
  readonly batch?: number;
}

export function startHonchoEventRelay(options: HonchoEventRelayOptions): { stop(): Promise<void> } {
  const batch = options.batch ?? 500;

  const relay = async (): Promise<void> => {
    for (;;) {
      const taken = await options.source.takeEvents(batch, async (events) => {
        // Events of a workspace with no endpoint have nowhere to go: dropped without a write.
        const workspaces = [...new Set(events.map((e) => e.workspaceId))];
        const listened = new Set<string>();
        for (const workspaceId of workspaces)
          if ((await options.store.listWebhooks(workspaceId)).length > 0) listened.add(workspaceId);
        for (const event of events)
          if (listened.has(event.workspaceId)) await options.store.enqueueWebhookEvent(event);
      });
      if (taken > 0) options.onRelayed();
      if (taken < batch) return;
    }
  };
  const runs = coalescedRuns(relay, options.onError);
  const run = runs.request;
  const off = options.source.feed.events.on('changes', run);
  const timer = setInterval(run, options.intervalMs ?? 5_000);
  timer.unref();
  run();
  return {
    async stop() {
      off();
      clearInterval(timer);
      await runs.stop();
    },
  };
}
