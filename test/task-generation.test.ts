import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidInputError, NotFoundError } from '../src/errors.ts';
import { createHarness, type Harness, sendMessages } from './helpers.ts';
import { STORES } from './support/stores.ts';

describe.each(STORES)('task-generation ($name)', (backend) => {
  let h: Harness;
  beforeEach(async () => {
    h = await createHarness({ backend });
  });
  afterEach(async () => {
    await h.close();
  });

  const status = (filter: { sessionId?: string; observerId?: string; senderId?: string } = {}) =>
    h.status.get({ workspaceId: 'default', ...filter });

  async function units(): Promise<string[]> {
    return (await h.store.listTasks()).map(
      (t) => `${t.key.taskType}:${t.key.observerId ?? '-'}<${t.key.senderId ?? '-'}`,
    );
  }

  describe('the SPEC worked example', () => {
    it('creates 3 + 2 tasks and filters them with AND', async () => {
      await h.deriver.upsertSession({
        id: 'x',
        peers: [
          { peerId: 'alice', observeOthers: false },
          { peerId: 'bob', observeOthers: true },
          { peerId: 'carol', observeOthers: true },
        ],
      });
      const a = await h.deriver.addMessages({
        sessionId: 'x',
        messages: [{ peerId: 'alice', content: 'hi' }],
      });
      expect(a.enqueuedTasks).toBe(3);
      const b = await h.deriver.addMessages({
        sessionId: 'x',
        messages: [{ peerId: 'bob', content: 'hey' }],
      });
      expect(b.enqueuedTasks).toBe(2);
      expect(await units()).toEqual([
        'representation:alice<alice',
        'representation:bob<alice',
        'representation:carol<alice',
        'representation:bob<bob',
        'representation:carol<bob',
      ]);
      expect((await status({ sessionId: 'x' })).totalWorkUnits).toBe(5);
      expect((await status({ sessionId: 'x' })).pendingWorkUnits).toBe(5);
      expect((await status({ observerId: 'carol' })).totalWorkUnits).toBe(2);
      expect((await status({ observerId: 'bob', senderId: 'alice' })).totalWorkUnits).toBe(1);
      expect(await status({ sessionId: 'nope' })).toEqual({
        totalWorkUnits: 0,
        completedWorkUnits: 0,
        inProgressWorkUnits: 0,
        pendingWorkUnits: 0,
        failedWorkUnits: 0,
        retryingWorkUnits: 0,
      });
      expect(
        (await h.status.sessions({ workspaceId: 'default' })).map((s) => [s.sessionId, s.totalWorkUnits]),
      ).toEqual([['x', 5]]);
      const messages = await h.store.listMessages('default', 'x');
      expect(messages.map((m) => [m.peerId, m.seq])).toEqual([
        ['alice', 1],
        ['bob', 2],
      ]);
    });
  });

  describe('observeMe and observeOthers', () => {
    it('creates no representation task for a sender whose peer-level observeMe is false', async () => {
      await h.deriver.upsertPeer({ id: 'alice', observeMe: false });
      await h.deriver.upsertSession({
        id: 's',
        peers: [{ peerId: 'alice' }, { peerId: 'bob', observeOthers: true }],
      });
      const r = await h.deriver.addMessages({
        sessionId: 's',
        messages: [{ peerId: 'alice', content: 'x' }],
      });
      expect(r.enqueuedTasks).toBe(0);
    });

    it('lets the session-level observeMe override the peer, and null inherit again', async () => {
      await h.deriver.upsertPeer({ id: 'alice', observeMe: false });
      await h.deriver.upsertSession({ id: 's', peers: [{ peerId: 'alice', observeMe: true }] });
      expect(
        (await h.deriver.addMessages({ sessionId: 's', messages: [{ peerId: 'alice', content: 'x' }] }))
          .enqueuedTasks,
      ).toBe(1);
      await h.deriver.upsertSession({ id: 's', peers: [{ peerId: 'alice', observeMe: null }] });
      expect(
        (await h.deriver.addMessages({ sessionId: 's', messages: [{ peerId: 'alice', content: 'x' }] }))
          .enqueuedTasks,
      ).toBe(0);
      await h.deriver.upsertPeer({ id: 'bob' });
      await h.deriver.upsertSession({ id: 's', peers: [{ peerId: 'bob', observeMe: false }] });
      expect(
        (await h.deriver.addMessages({ sessionId: 's', messages: [{ peerId: 'bob', content: 'x' }] }))
          .enqueuedTasks,
      ).toBe(0);
    });

    it('follows observeOthers as it is toggled, and peers that leave stop observing', async () => {
      await h.deriver.upsertSession({ id: 's', peers: [{ peerId: 'alice' }, { peerId: 'bob' }] });
      const send = async () =>
        (await h.deriver.addMessages({ sessionId: 's', messages: [{ peerId: 'alice', content: 'x' }] }))
          .enqueuedTasks;
      expect(await send()).toBe(1);
      await h.deriver.upsertSession({ id: 's', peers: [{ peerId: 'bob', observeOthers: true }] });
      expect(await send()).toBe(2);
      await h.deriver.upsertSession({ id: 's', peers: [{ peerId: 'bob', observeOthers: false }] });
      expect(await send()).toBe(1);
      await h.deriver.upsertSession({ id: 's', peers: [{ peerId: 'bob', observeOthers: true }] });
      await h.deriver.removeSessionPeers({ sessionId: 's', peerIds: ['bob'] });
      expect(await send()).toBe(1);
      expect((await h.deriver.getSession({ id: 's' }))?.peers.map((p) => p.peerId)).toEqual(['alice']);
    });

    it('adds an unknown sender to the session and creates the peer', async () => {
      await h.deriver.upsertSession({ id: 's', peers: [{ peerId: 'bob', observeOthers: true }] });
      const r = await h.deriver.addMessages({ sessionId: 's', messages: [{ peerId: 'dave', content: 'x' }] });
      expect(r.enqueuedTasks).toBe(2);
      expect(await h.deriver.getPeer({ id: 'dave' })).toMatchObject({
        workspaceId: 'default',
        id: 'dave',
        observeMe: true,
      });
      expect((await h.deriver.getSession({ id: 's' }))?.peers).toContainEqual({
        peerId: 'dave',
        observeMe: null,
        observeOthers: false,
      });
    });

    it('skips representation tasks when reasoning is disabled for the workspace or the session', async () => {
      await h.deriver.upsertWorkspace({
        id: 'w',
        settings: { reasoningEnabled: false, summariesEnabled: false },
      });
      await h.deriver.upsertSession({ workspaceId: 'w', id: 's', peers: [{ peerId: 'a' }] });
      const sent = await h.deriver.addMessages({
        workspaceId: 'w',
        sessionId: 's',
        messages: [{ peerId: 'a', content: '' }],
      });
      expect(sent.enqueuedTasks).toBe(0);
      await h.deriver.upsertSession({ workspaceId: 'w', id: 's', settings: { reasoningEnabled: true } });
      const again = await h.deriver.addMessages({
        workspaceId: 'w',
        sessionId: 's',
        messages: [{ peerId: 'a', content: '' }],
      });
      expect(again.enqueuedTasks).toBe(1);
    });
  });

  describe('summaries', () => {
    it('creates short summaries at 20 and 40 and a long one at 60', async () => {
      await h.deriver.upsertSession({ id: 's', peers: [{ peerId: 'a', observeMe: false }] });
      await sendMessages(h.deriver, { sessionId: 's', peerId: 'a', count: 61 });
      const tasks = await h.store.listTasks();
      expect(tasks.map((t) => [t.key.taskType, t.key.observerId, t.payload.seq, t.payload.level])).toEqual([
        ['summary', null, 20, 'short'],
        ['summary', null, 40, 'short'],
        ['summary', null, 60, 'long'],
      ]);
      expect((await status({ observerId: 'a' })).totalWorkUnits).toBe(0);
      expect((await status({ sessionId: 's' })).totalWorkUnits).toBe(3);
    });

    it('uses per-session intervals and the summary switch', async () => {
      await h.deriver.upsertSession({
        id: 's',
        peers: [{ peerId: 'a', observeMe: false }],
        settings: { messagesPerShortSummary: 2, messagesPerLongSummary: 5 },
      });
      await sendMessages(h.deriver, { sessionId: 's', peerId: 'a', count: 6 });
      expect((await h.store.listTasks()).map((t) => [t.payload.seq, t.payload.level])).toEqual([
        [2, 'short'],
        [4, 'short'],
        [5, 'long'],
        [6, 'short'],
      ]);
      await h.deriver.upsertSession({ id: 's', settings: { summariesEnabled: false } });
      await sendMessages(h.deriver, { sessionId: 's', peerId: 'a', count: 4 });
      expect(await h.store.listTasks()).toHaveLength(4);
    });
  });

  describe('limits and rejected input', () => {
    async function snapshot() {
      return {
        tasks: (await h.store.listTasks()).length,
        messages: (await h.store.listMessages('default', 's')).length,
        session: await h.deriver.getSession({ id: 's' }),
      };
    }

    async function rejected(call: () => Promise<unknown>, path: (string | number)[], message: RegExp) {
      const before = await snapshot();
      const error = await call().then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(InvalidInputError);
      expect((error as InvalidInputError).argumentPath).toEqual(path);
      expect((error as InvalidInputError).message).toMatch(message);
      expect(await snapshot()).toEqual(before);
    }

    beforeEach(async () => {
      await h.deriver.upsertSession({ id: 's', peers: [{ peerId: 'a' }] });
      await h.deriver.addMessages({ sessionId: 's', messages: [{ peerId: 'a', content: 'first' }] });
    });

    it('allows 10 observers per session and rejects the 11th, writing nothing', async () => {
      const ten = Array.from({ length: 10 }, (_, i) => ({ peerId: `o${i}`, observeOthers: true }));
      await h.deriver.upsertSession({ id: 's', peers: ten });
      await rejected(
        () => h.deriver.upsertSession({ id: 's', peers: [{ peerId: 'o10', observeOthers: true }] }),
        ['peers', 0, 'observeOthers'],
        /at most 10 peers/,
      );
      expect(await h.deriver.getPeer({ id: 'o10' })).toBeNull();
    });

    it('rejects bad ids, bad batches and oversized content with the argument at fault', async () => {
      const add =
        (messages: { peerId: string; content: string }[], sessionId = 's') =>
        () =>
          h.deriver.addMessages({ sessionId, messages });
      await rejected(add([{ peerId: '', content: 'x' }]), ['messages', 0, 'peerId'], /must not be empty/);
      await rejected(add([{ peerId: 'a b', content: 'x' }]), ['messages', 0, 'peerId'], /letters, digits/);
      await rejected(
        add([{ peerId: 'a'.repeat(101), content: 'x' }]),
        ['messages', 0, 'peerId'],
        /at most 100/,
      );
      await rejected(add([]), ['messages'], /at least 1/);
      await rejected(
        add(Array.from({ length: 101 }, () => ({ peerId: 'a', content: 'x' }))),
        ['messages'],
        /at most 100 messages/,
      );
      await rejected(
        add([
          { peerId: 'a', content: 'ok' },
          { peerId: 'a', content: 'x'.repeat(65_536) },
        ]),
        ['messages', 1, 'content'],
        /at most 65535 characters/,
      );
      await rejected(
        () =>
          h.deriver.addMessages({
            sessionId: 's',
            messages: [{ peerId: 'a', content: 'x', extra: 1 } as never],
          }),
        ['messages', 0],
        /unknown field\(s\): extra/,
      );
      await rejected(
        () => h.deriver.upsertPeer({ id: 'p', observeMe: 'yes' as never }),
        ['observeMe'],
        /true or false/,
      );
      await rejected(
        () => h.deriver.upsertSession({ id: 's', peers: [{ peerId: 'q' }, { peerId: 'q' }] }),
        ['peers', 1],
        /listed more than once/,
      );
      const max = await h.deriver.addMessages({
        sessionId: 's',
        messages: [{ peerId: 'a', content: '😀'.repeat(65_535) }],
      });
      expect(max.messages[0]?.seq).toBe(2);
    });

    it('answers NOT_FOUND for messages to a session that does not exist', async () => {
      const error = await h.deriver
        .addMessages({ sessionId: 'ghost', messages: [{ peerId: 'a', content: 'x' }] })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(NotFoundError);
      expect(await h.deriver.getSession({ id: 'ghost' })).toBeNull();
    });
  });
});
