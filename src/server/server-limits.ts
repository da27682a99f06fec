/**
 * Resource limits of the HTTP and WebSocket server: one place for their defaults, used by
 * `createDeriverServer` and by the environment configuration alike.
 */
import { limits } from '../domain/limits.ts';

/**
 * Bytes of the largest valid `addMessages` request as `JSON.stringify` writes it: 100 messages of
 * 65,535 characters, each character at most 6 bytes (a control character escaped as `\u001f`; a
 * 4-byte UTF-8 character is two UTF-16 units, so at most 2 bytes per unit), plus 512 bytes per
 * message and 64 KiB for the document and the rest: 39,437,736 bytes (about 37.6 MiB).
 */
export const LARGEST_VALID_BODY_BYTES =
  limits.messagesPerCallMax * (limits.contentMaxLength * 6 + 512) + 64 * 1024;

export interface ServerLimits {
  /** Largest HTTP request body, in bytes. @default LARGEST_VALID_BODY_BYTES (about 37.6 MiB) */
  readonly maxBodyBytes: number;
  /** Bytes of all HTTP bodies being received at once; more gets 429. @default 256 MiB */
  readonly maxInflightBodyBytes: number;
  /** Largest WebSocket message, in bytes (a bigger one closes the socket, 1009). @default 64 KiB */
  readonly wsMaxPayloadBytes: number;
  /** Subscriptions open at once on one WebSocket; one more gets an error for its id. @default 100 */
  readonly maxSubscriptionsPerSocket: number;
  /** Open connections per remote address; 0 is no cap. @default 1024 */
  readonly maxConnectionsPerAddress: number;
  /** Mutations per second per client (key scope, else address), burst twice that; 0 is no limit. @default 200 */
  readonly mutationsPerSecond: number;
}

export const DEFAULT_SERVER_LIMITS: ServerLimits = {
  maxBodyBytes: LARGEST_VALID_BODY_BYTES,
  maxInflightBodyBytes: 256 * 2 ** 20,
  wsMaxPayloadBytes: 64 * 1024,
  maxSubscriptionsPerSocket: 100,
  maxConnectionsPerAddress: 1024,
  mutationsPerSecond: 200,
};
