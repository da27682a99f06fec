import type { SettingsOverride } from './settings.ts';

/** A JSON object as a client gave it (Honcho's `metadata` and `configuration`). */
export type JsonObject = { readonly [key: string]: unknown };

/** Honcho's attributes of a workspace, peer or session: when it was created, and two JSON objects. */
export interface Attributes {
  /** When it was first created, epoch ms. */
  readonly createdAt: number;
  /** @default {} */
  readonly metadata: JsonObject;
  /** @default {} */
  readonly configuration: JsonObject;
}

/** What a write sets of `Attributes`: each given object replaces the stored one (Honcho's rule). */
export interface AttributesUpdate {
  readonly metadata?: JsonObject | undefined;
  readonly configuration?: JsonObject | undefined;
}

/** An upsert's answer: the object, and whether this call created it. */
export type Upserted<T> = T & { readonly created: boolean };

/** A participant (user or agent). */
export interface Peer extends Attributes {
  readonly workspaceId: string;
  readonly id: string;
  /** Whether tasks that derive facts about this peer are created. @default true */
  readonly observeMe: boolean;
}

/** A peer's membership of one session. */
export interface SessionPeer {
  readonly peerId: string;
  /** `null` inherits the peer's own `observeMe`. */
  readonly observeMe: boolean | null;
  /** Whether this peer observes the other peers of the session. @default false */
  readonly observeOthers: boolean;
}

export interface Workspace extends Attributes {
  readonly id: string;
  readonly settings: SettingsOverride;
}

export interface Session extends Attributes {
  readonly workspaceId: string;
  readonly id: string;
  /** Current members, ordered by peer id. */
  readonly peers: readonly SessionPeer[];
  /** Overrides of the workspace's derivation settings. */
  readonly settings: SettingsOverride;
  /** Number of messages so far; the next message gets `seq = messageCount + 1`. */
  readonly messageCount: number;
}

export interface Message {
  readonly id: string;
  readonly workspaceId: string;
  readonly sessionId: string;
  readonly peerId: string;
  /** 1-based sequence number within the session. */
  readonly seq: number;
  readonly content: string;
  readonly createdAt: number;
  /** @default {} */
  readonly metadata: JsonObject;
}
