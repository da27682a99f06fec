export {
  type AddMessagesResult,
  createDeriverClient,
  type DeriverClient,
  type DeriverClientOptions,
  type DeriverStatus,
  type DeriverStatusWithSessions,
  type MessagesDerivation,
  type Peer,
  type Session,
  type SessionClient,
  type StatusFilter,
  type StatusStream,
  type WaitForIdleOptions,
  WaitForIdleTimeoutError,
  type WaitForMessagesOptions,
  type WatchOptions,
} from './client.ts';
export { DeriverClientError, type GraphQLErrorEntry } from './errors.ts';
