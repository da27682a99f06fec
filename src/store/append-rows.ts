/**
 * What both stores write for an `appendMessages` call, worked out once from its plan (pure): the
 * work units the call feeds, in key order (a stable lock order across calls), each with how many new
 * tasks it gets; the tasks in creation order (message order, then the order the plan lists them, so
 * task ids are FIFO), each with its unit's key and its message; and the messages as the call
 * answers them once the store has given them ids.
 */
import type { Message } from '../domain/model.ts';
import type { MessagePlan, PlannedMessage, PlannedTask } from '../domain/task-generation.ts';
import { formatWorkUnitKey, type WorkUnitKey } from '../domain/work-unit-key.ts';

export interface AppendUnit {
  readonly unitKey: string;
  readonly key: WorkUnitKey;
  /** New tasks the call gives the unit. */
  readonly tasks: number;
}

export interface AppendTask {
  readonly task: PlannedTask;
  readonly unitKey: string;
  /** Index of its message in the plan. */
  readonly message: number;
}

export interface AppendRows {
  readonly units: readonly AppendUnit[];
  readonly tasks: readonly AppendTask[];
}

export function appendRows(plan: MessagePlan): AppendRows {
  const tasks: AppendTask[] = [];
  const units = new Map<string, { unitKey: string; key: WorkUnitKey; tasks: number }>();
  for (const [message, planned] of plan.messages.entries()) {
    for (const task of planned.tasks) {
      const unitKey = formatWorkUnitKey(task.key);
      tasks.push({ task, unitKey, message });
      const unit = units.get(unitKey);
      if (unit) unit.tasks++;
      else units.set(unitKey, { unitKey, key: task.key, tasks: 1 });
    }
  }
  const ordered = [...units.values()].sort((a, b) =>
    a.unitKey < b.unitKey ? -1 : a.unitKey > b.unitKey ? 1 : 0,
  );
  return { units: ordered, tasks };
}

/** The call's messages as it answers them; `ids[i]` is the id the store gave `plan.messages[i]`. */
export function appendedMessages(
  workspaceId: string,
  sessionId: string,
  messages: readonly PlannedMessage[],
  ids: readonly (number | bigint | string)[],
  now: number,
): Message[] {
  return messages.map((m, i) => ({
    id: String(ids[i]),
    workspaceId,
    sessionId,
    peerId: m.peerId,
    seq: m.seq,
    content: m.content,
    createdAt: now,
    metadata: m.metadata ?? {},
  }));
}
