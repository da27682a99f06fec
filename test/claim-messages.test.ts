/**
 * Every claimed task gets its message, on both stores, also when several claimed tasks (one per
 * observer) share one message: on PostgreSQL the claim once handed the message to one of them only.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createHarness, type Harness, unexpectedSummary } from './helpers.ts';
import { STORES } from './support/stores.ts';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe.each(STORES)('claimed tasks carry their messages ($name)', (backend) => {
  it('hands the shared message to the task of every observer', async () => {
    h = await createHarness({ backend });
    await h.deriver.upsertWorkspace({ id: 'default', settings: { summariesEnabled: false } });
    const peers = ['alice', 'bob', 'carol', 'dave'].map((peerId) => ({ peerId, observeOthers: true }));
    await h.deriver.upsertSession({ id: 's', peers });
    await h.deriver.addMessages({ sessionId: 's', messages: [{ peerId: 'alice', content: 'one for all' }] });
    const seen: { observer: string | null; contents: string[] }[] = [];
    h.startScheduler({
      concurrency: 4,
      handlers: {
        representation: ({ task }) => {
          seen.push({ observer: task.key.observerId, contents: task.messages.map((m) => m.content) });
        },
        summary: unexpectedSummary,
      },
    });
    await h.idle();
    expect(seen.sort((a, b) => String(a.observer).localeCompare(String(b.observer)))).toEqual(
      ['alice', 'bob', 'carol', 'dave'].map((observer) => ({ observer, contents: ['one for all'] })),
    );
  });

  it('hands each task its message whole, for the head and the tasks claimed after it', async () => {
    h = await createHarness({ backend });
    await h.deriver.upsertWorkspace({ id: 'default', settings: { summariesEnabled: false } });
    await h.deriver.upsertSession({ id: 's', peers: [{ peerId: 'alice' }] });
    const added = await h.deriver.addMessages({
      sessionId: 's',
      messages: [
        { peerId: 'alice', content: 'first', metadata: { mood: 'calm', tags: ['a', 'b'] } },
        { peerId: 'alice', content: 'second' },
        { peerId: 'alice', content: 'third', metadata: { n: 3 } },
      ],
    });
    const handed: unknown[] = [];
    h.startScheduler({
      concurrency: 1,
      handlers: {
        representation: ({ task }) => {
          handed.push(...task.messages);
        },
        summary: unexpectedSummary,
      },
    });
    await h.idle();
    expect(handed).toEqual(added.messages);
  });
});
