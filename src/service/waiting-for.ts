/**
 * Why a work unit with pending tasks is not running them (`WorkUnit.waitingFor`, docs/api.md), as
 * one pure function of what the store knows about the unit, its type's batching and rate-limit
 * state, and the time.
 */
import type { BatchPolicy } from '../store/queue-plan.ts';
import type { WorkUnitInfo } from '../store/store.ts';

export type WaitReason =
  /** Its next task waits for the one running now (tasks of a unit run one at a time, in order). */
  | 'BEHIND_RUNNING_TASK'
  /** A worker holds it and is about to start its next task. */
  | 'CLAIMED'
  /** Its next task failed and waits for its retry, until `until`. */
  | 'BACKING_OFF'
  /** Its task type is rate limited (a limit, or a provider's 429) until `until`. */
  | 'RATE_LIMITED'
  /** Its batch is filling: `tokens` of `targetTokens`, `tasks` of `targetTasks`; it goes at `until` anyway. */
  | 'BATCH_FILLING'
  /** It is ready: every worker (or every slot its type may use) is busy. */
  | 'NO_FREE_WORKER';

export interface WaitingFor {
  readonly reason: WaitReason;
  /** When the wait ends (epoch ms), for BACKING_OFF, RATE_LIMITED and BATCH_FILLING. */
  readonly until: number | null;
  /** BATCH_FILLING: the batch so far and its targets. */
  readonly tokens: number | null;
  readonly targetTokens: number | null;
  readonly tasks: number | null;
  readonly targetTasks: number | null;
}

const wait = (reason: WaitReason, until: number | null = null, batch?: Partial<WaitingFor>): WaitingFor => ({
  reason,
  until,
  tokens: null,
  targetTokens: null,
  tasks: null,
  targetTasks: null,
  ...batch,
});

/** Why `unit` waits at `now`; `null` when nothing of it is pending. */
export function waitingFor(
  unit: WorkUnitInfo,
  now: number,
  batch: BatchPolicy | undefined,
  /** How long its task type is still rate limited (0: not). */
  rateLimitedMs: number,
): WaitingFor | null {
  if (unit.counters.pending === 0) return null;
  if (unit.counters.running > 0) return wait('BEHIND_RUNNING_TASK');
  if (rateLimitedMs > 0) return wait('RATE_LIMITED', now + rateLimitedMs);
  if (unit.leased) return wait('CLAIMED');
  const at = unit.claimableAt ?? 0;
  if (at > now && unit.counters.retrying > 0) return wait('BACKING_OFF', at);
  if (at > now && batch) {
    return wait('BATCH_FILLING', at, {
      tokens: unit.pendingTokens,
      targetTokens: batch.maxTokens,
      tasks: unit.counters.pending,
      targetTasks: batch.maxTasks,
    });
  }
  if (at > now) return wait('BACKING_OFF', at);
  return wait('NO_FREE_WORKER');
}
