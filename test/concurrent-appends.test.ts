/**
 * Concurrent `addMessages` calls (the SQLite store commits them in groups, one fsync for many):
 * each call is still all or nothing, a failing one is refused alone, sequence numbers stay unique
 * and contiguous, and everything acknowledged is there after a restart, with its tasks.
 */
import { describe, expect, it } from 'vitest';
import { NotFoundError } from '../src/errors.ts';
import { createHarness } from './helpers.ts';
import { STORES } from './support/stores.ts';

describe.each(STORES)('concurrent appends ($name)', (backend) => {
  it('are each all or nothing, the failing one alone, and all acknowledged ones durable', async () => {
    const location = await backend.fresh();
    try {
      const h = await createHarness({ storeUrl: location.url });
      await h.deriver.upsertWorkspace({ id: 'default', settings: { summariesEnabled: false } });
      await h.deriver.upsertSession({
        id: 's',
        peers: [{ peerId: 'alice' }, { peerId: 'bob', observeOthers: true }],
      });
      const calls = Array.from({ length: 60 }, (_, i) =>
        i === 17
          ? h.deriver.addMessages({ sessionId: 'missing', messages: [{ peerId: 'alice', content: 'lost' }] })
          : h.deriver.addMessages({
              sessionId: 's',
              messages: [
                { peerId: 'alice', content: `call ${i} first` },
                { peerId: 'alice', content: `call ${i} second` },
              ],
            }),
      );
      const outcomes = await Promise.allSettled(calls);
      const refused = outcomes.filter((o) => o.status === 'rejected');
      expect(refused).toHaveLength(1);
      expect((refused[0] as PromiseRejectedResult).reason).toBeInstanceOf(NotFoundError);
      const acknowledged = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
      expect(acknowledged).toHaveLength(59);
      // Each call got two consecutive sequence numbers; together they are 1..118 without a gap.
      for (const result of acknowledged) {
        const [a, b] = result.messages;
        expect(b?.seq).toBe((a?.seq ?? 0) + 1);
      }
      expect(acknowledged.flatMap((r) => r.messages.map((m) => m.seq)).sort((x, y) => x - y)).toEqual(
        Array.from({ length: 118 }, (_, i) => i + 1),
      );
      await h.close();

      const reopened = await createHarness({ storeUrl: location.url });
      try {
        const stored = await reopened.store.listMessages('default', 's', { limit: 1000 });
        expect(stored).toHaveLength(118);
        expect(stored.some((m) => m.content === 'lost')).toBe(false);
        // alice observes herself and bob observes her: 2 tasks per message.
        expect((await reopened.status.get({ workspaceId: 'default' })).totalWorkUnits).toBe(236);
        expect(await reopened.store.listTasks()).toHaveLength(236);
      } finally {
        await reopened.close();
      }
    } finally {
      await location.dispose();
    }
  });
});
