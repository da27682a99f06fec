/** Public API of Deriver Live. */
export { type Access, authorize } from './auth/authorize.ts';
export { createKeyring, type Keyring, type KeyringOptions } from './auth/keyring.ts';
export type { Principal, Scope } from './auth/scope.ts';
export type { Counters, CountersSnapshot, ReadSnapshot, UnitChanges, UnitDelta } from './domain/counters.ts';
export type {
  AddMessagesInput,
  RemoveSessionPeersInput,
  StatusFilter,
  StatusFilterInput,
  UpsertPeerInput,
  UpsertSessionInput,
  UpsertWorkspaceInput,
} from './domain/inputs.ts';
export { DEFAULT_WORKSPACE_ID, limits } from './domain/limits.ts';
export type { Message, Peer, Session, SessionPeer, Workspace } from './domain/model.ts';
export { DEFAULT_SETTINGS, type DerivationSettings, type SettingsOverride } from './domain/settings.ts';
export {
  estimateTokens,
  type SummaryLevel,
  type SummaryRange,
  type TaskPayload,
  type TokenEstimator,
} from './domain/task-generation.ts';
export { formatWorkUnitKey, TASK_TYPES, type TaskType, type WorkUnitKey } from './domain/work-unit-key.ts';
export {
  AuthDisabledError,
  DeriverError,
  type ErrorCode,
  ForbiddenError,
  HandlerRefusedError,
  type InputIssue,
  InvalidInputError,
  LeaseLostError,
  NotFoundError,
  PermanentTaskError,
  RateLimitedError,
  ShutdownError,
  StoreUnavailableError,
  TaskTimeoutError,
  UnauthenticatedError,
} from './errors.ts';
export type { ChangeFeed, ChangeFeedEvents } from './feed/change-feed.ts';
export { openFeed } from './feed/open-feed.ts';
export { createDemoHandler } from './handlers/demo-handler.ts';
export {
  createLiveStatus,
  type LiveStatus,
  type LiveStatusOptions,
  type LiveSubscribeOptions,
  type ViewStream,
} from './live/live-status.ts';
export type { StatusView } from './live/status-view.ts';
export type { SchedulerEvents } from './scheduler/events.ts';
export type {
  BatchResult,
  SchedulerOptions,
  TaskContext,
  TaskHandler,
  TaskTypeLimits,
} from './scheduler/options.ts';
export { createScheduler, type Scheduler } from './scheduler/scheduler.ts';
export { createDeriver, type Deriver } from './service/deriver.ts';
export type { Progress } from './status/completion-rate.ts';
export type { SessionStatusCounts, StatusCounts } from './status/counts.ts';
export {
  createStatusEngine,
  type StatusEngine,
  type StatusEngineOptions,
  type StatusWatch,
} from './status/status-engine.ts';
export type { StatusChange, StatusQuery } from './status/status-filter.ts';
export {
  type OpenStoreOptions,
  openStore,
  parseStoreUrl,
  type StoreLocation,
} from './store/open-store.ts';
export type { PostgresStoreOptions } from './store/postgres/postgres-store.ts';
export type { BatchPolicies, BatchPolicy } from './store/queue-plan.ts';
export type { RateLimit, RateLimits } from './store/rate-limits.ts';
export { createSqliteStore, type SqliteStoreOptions } from './store/sqlite/sqlite-store.ts';
export {
  CANCELLED_ERROR,
  type CancelResult,
  type FailedTask,
  type Page,
  type Store,
  type StoreEvents,
  type TaskRecord,
  type TaskRow,
  type TaskState,
  type UnitFilter,
  type WorkUnitInfo,
} from './store/store.ts';
