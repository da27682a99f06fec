/** `appendRows`: the units an `appendMessages` call feeds, in key order, and its tasks in creation order. */
import { expect, it } from 'vitest';
import type { PlannedTask } from '../src/domain/task-generation.ts';
import { formatWorkUnitKey, type WorkUnitKey } from '../src/domain/work-unit-key.ts';
import { appendedMessages, appendRows } from '../src/store/append-rows.ts';

const key = (observerId: string, senderId: string): WorkUnitKey => ({
  taskType: 'representation',
  workspaceId: 'w',
  sessionId: 's',
  observerId,
  senderId,
});
const task = (k: WorkUnitKey, seq: number): PlannedTask => ({ key: k, payload: { seq }, tokens: 1 });

it('lists each unit once, in key order, with its number of new tasks; and the tasks in message order', () => {
  const [zed, amy] = [key('zed', 'zed'), key('amy', 'zed')];
  const plan = {
    newPeers: [],
    joins: [],
    messages: [
      { peerId: 'zed', content: 'a', seq: 1, tasks: [task(zed, 1), task(amy, 1)] },
      { peerId: 'zed', content: 'b', seq: 2, tasks: [] },
      { peerId: 'zed', content: 'c', seq: 3, tasks: [task(zed, 3)] },
    ],
  };
  const rows = appendRows(plan);
  expect(rows.units).toEqual([
    { unitKey: formatWorkUnitKey(amy), key: amy, tasks: 1 },
    { unitKey: formatWorkUnitKey(zed), key: zed, tasks: 2 },
  ]);
  expect(rows.tasks.map((t) => [t.unitKey, t.message, t.task.payload.seq])).toEqual([
    [formatWorkUnitKey(zed), 0, 1],
    [formatWorkUnitKey(amy), 0, 1],
    [formatWorkUnitKey(zed), 2, 3],
  ]);
  expect(
    appendedMessages('w', 's', plan.messages, [7n, 8, '9'], 100).map((m) => [m.id, m.seq, m.metadata]),
  ).toEqual([
    ['7', 1, {}],
    ['8', 2, {}],
    ['9', 3, {}],
  ]);
});
