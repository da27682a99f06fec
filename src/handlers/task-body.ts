/**
 * The JSON a task is sent as to a deriver in another language (docs/deriver.md). Fields may be
 * added in later versions; none is renamed.
 */
import type { SummaryRange } from '../domain/task-generation.ts';
import type { TaskType } from '../domain/work-unit-key.ts';
import type { TaskRecord } from '../store/store.ts';

export interface TaskBodyMessage {
  readonly id: string;
  readonly seq: number;
  readonly peerId: string;
  readonly content: string;
}

export interface TaskBody {
  /** Stable across attempts: use it to make the work idempotent. */
  readonly taskId: string;
  readonly type: TaskType;
  /** 1 for the first attempt. */
  readonly attempt: number;
  readonly workspaceId: string;
  readonly sessionId: string;
  /** `null` for a summary task. */
  readonly observerId: string | null;
  /** `null` for a summary task. */
  readonly senderId: string | null;
  /** The messages the task covers, in `seq` order. */
  readonly messages: readonly TaskBodyMessage[];
  /** A summary task's level and range; `null` for a representation task. */
  readonly summary: SummaryRange | null;
}

export function taskBody(task: TaskRecord, attempt: number): TaskBody {
  return {
    taskId: String(task.id),
    type: task.type,
    attempt,
    workspaceId: task.key.workspaceId,
    sessionId: task.key.sessionId,
    observerId: task.key.observerId,
    senderId: task.key.senderId,
    messages: task.messages.map((m) => ({ id: m.id, seq: m.seq, peerId: m.peerId, content: m.content })),
    summary: task.summary,
  };
}
