/**
 * The application service, the layer above the domain rules and the store: validates input with the shared schemas, plans with the pure rules of
 * `task-generation.ts`, and lets the store write the plan in one transaction. Invalid input throws
 * `InvalidInputError` before anything is written.
 */

import {
  type AddMessagesInput,
  addMessagesInput,
  type LookupInput,
  lookupInput,
  parseInput,
  type RemoveSessionPeersInput,
  removeSessionPeersInput,
  type UpsertPeerInput,
  type UpsertSessionInput,
  type UpsertWorkspaceInput,
  upsertPeerInput,
  upsertSessionInput,
  upsertWorkspaceInput,
} from '../domain/inputs.ts';
import type { Peer, Session, Upserted, Workspace } from '../domain/model.ts';
import { planMessages, planSessionPeers, type TokenEstimator } from '../domain/task-generation.ts';
import { NotFoundError } from '../errors.ts';
import type { StatusQuery } from '../status/status-filter.ts';
import type { AppendMessagesResult, Store } from '../store/store.ts';

export interface Deriver {
  /** Gets or creates the workspace; given settings, metadata and configuration are stored. */
  upsertWorkspace(input: UpsertWorkspaceInput): Promise<Upserted<Workspace>>;
  getWorkspace(id: string): Promise<Workspace | null>;
  /** Creates the peer (and its workspace) or updates its `observeMe`, metadata and configuration. */
  upsertPeer(input: UpsertPeerInput): Promise<Upserted<Peer>>;
  getPeer(input: LookupInput): Promise<Peer | null>;
  /** Creates the session or updates it; listed peers join (created when missing) or are updated. */
  upsertSession(input: UpsertSessionInput): Promise<Upserted<Session>>;
  /** Peers leave the session; their earlier tasks stay. Throws `NotFoundError` for an unknown session. */
  removeSessionPeers(input: RemoveSessionPeersInput): Promise<Session>;
  getSession(input: LookupInput): Promise<Session | null>;
  /**
   * Stores 1 to 100 messages and the tasks they create, in one transaction. Senders that are not in
   * the session join it. Throws `NotFoundError` when the session does not exist, unless
   * `createSession` asks to create it (Honcho's rule for a message).
   */
  addMessages(input: AddMessagesInput): Promise<AppendMessagesResult>;
  /**
   * Throws `NotFoundError` (naming the argument) when `filter` names a session or peer that does
   * not exist. Status reads answer zeros for those (as Honcho does); waiting for idle checks first,
   * so a typo is never "done" at once.
   */
  assertFilterNamesKnown(filter: StatusQuery): Promise<void>;
}

export interface DeriverOptions {
  readonly store: Store;
  /** Estimates a message's input tokens (batches, token rate limits). @default characters / 4 */
  readonly estimateTokens?: TokenEstimator | undefined;
}

export function createDeriver(options: DeriverOptions): Deriver {
  const { store, estimateTokens } = options;
  return {
    async upsertWorkspace(input) {
      const { id, settings, metadata, configuration } = parseInput(upsertWorkspaceInput, input);
      return store.upsertWorkspace(id, settings, { metadata, configuration });
    },

    async getWorkspace(id) {
      return store.getWorkspace(id);
    },

    async upsertPeer(input) {
      const { workspaceId, id, observeMe, metadata, configuration } = parseInput(upsertPeerInput, input);
      return store.upsertPeer(workspaceId, id, observeMe, { metadata, configuration });
    },

    async getPeer(input) {
      const { workspaceId, id } = parseInput(lookupInput, input);
      return store.getPeer(workspaceId, id);
    },

    async upsertSession(input) {
      const {
        workspaceId,
        id,
        peers = [],
        settings,
        metadata,
        configuration,
      } = parseInput(upsertSessionInput, input);
      return store.upsertSession(
        { workspaceId, id, settings, attributes: { metadata, configuration } },
        peers.map((p) => p.peerId),
        (current) => planSessionPeers(current, peers),
      );
    },

    async removeSessionPeers(input) {
      const { workspaceId, sessionId, peerIds } = parseInput(removeSessionPeersInput, input);
      if (!(await store.getSession(workspaceId, sessionId))) throw new NotFoundError('session', sessionId);
      return store.upsertSession({ workspaceId, id: sessionId }, [], (current) =>
        planSessionPeers(current, [], peerIds),
      );
    },

    async getSession(input) {
      const { workspaceId, id } = parseInput(lookupInput, input);
      return store.getSession(workspaceId, id);
    },

    async addMessages(input) {
      const { workspaceId, sessionId, messages, notifyWhenDerived, createSession } = parseInput(
        addMessagesInput,
        input,
      );
      const request = {
        workspaceId,
        sessionId,
        messages,
        notifyWhenDerived: notifyWhenDerived ?? false,
        createSession: createSession ?? false,
      };
      return store.appendMessages(request, (snapshot) => planMessages(snapshot, messages, estimateTokens));
    },

    async assertFilterNamesKnown({ workspaceId, sessionId, observerId, senderId }) {
      if (sessionId !== undefined && !(await store.getSession(workspaceId, sessionId))) {
        throw new NotFoundError('session', sessionId, 'sessionId');
      }
      for (const [argument, peerId] of [
        ['observerId', observerId],
        ['senderId', senderId],
      ] as const) {
        if (peerId !== undefined && !(await store.getPeer(workspaceId, peerId))) {
          throw new NotFoundError('peer', peerId, argument);
        }
      }
    },
  };
}
