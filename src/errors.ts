/**
 * Named errors of Deriver Live. Callers branch on the class or on `code`, never on message text.
 * The GraphQL edge maps `code` to `extensions.code`; anything that is not a `DeriverError` is
 * treated as internal and masked there.
 */

/** Codes a client may see in `extensions.code`. */
export type ErrorCode =
  | 'BAD_USER_INPUT'
  | 'NOT_FOUND'
  | 'UNAUTHENTICATED'
  | 'FORBIDDEN'
  | 'RATE_LIMITED'
  | 'AUTH_DISABLED'
  | 'STORE_UNAVAILABLE';

export abstract class DeriverError extends Error {
  abstract readonly code: ErrorCode;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** One problem with a caller's input: where it is (`path`) and what is wrong, in plain words. */
export interface InputIssue {
  readonly path: readonly (string | number)[];
  readonly message: string;
}

/** Input was rejected before anything was written. */
export class InvalidInputError extends DeriverError {
  readonly code = 'BAD_USER_INPUT' as const;
  readonly issues: readonly InputIssue[];
  constructor(issues: readonly InputIssue[]) {
    const first = issues[0];
    const where = first && first.path.length > 0 ? `${first.path.join('.')}: ` : '';
    super(`${where}${first?.message ?? 'invalid input'}`);
    this.issues = issues;
  }
  /**
   * Path of the first offending argument, e.g. `['messages', 3, 'content']`. (Not named `path`:
   * graphql-js takes any error with an array `path` for an already located GraphQLError.)
   */
  get argumentPath(): readonly (string | number)[] {
    return this.issues[0]?.path ?? [];
  }
}

/** A referenced object does not exist. */
export class NotFoundError extends DeriverError {
  readonly code = 'NOT_FOUND' as const;
  constructor(
    readonly resource: 'workspace' | 'session' | 'peer' | 'message' | 'webhook',
    readonly id: string,
    /** The argument that named it, when one did (`sessionId`, `observerId`, ...). */
    readonly argument?: string,
  ) {
    super(`${resource} "${id}" does not exist`);
  }
}

/** No credentials, or credentials that do not verify (bad signature, expired, malformed). */
export class UnauthenticatedError extends DeriverError {
  readonly code = 'UNAUTHENTICATED' as const;
}

/** Valid credentials whose scope does not cover the operation. Says nothing of whether objects exist. */
export class ForbiddenError extends DeriverError {
  readonly code = 'FORBIDDEN' as const;
}

/**
 * Too many requests. The server answers it to a client that sends too many requests or holds too
 * many open operations; a task handler throws it when its provider says so (the HTTP handler on
 * 429, from `Retry-After`): the task, or every task of a batch, goes back in line with no failure
 * counted, and its task type pauses for `retryAfterMs` on every instance sharing the store.
 * `retryAfterSeconds` (fractions allowed) says when trying again makes sense; `null`: a client must
 * first close something, a handler's type pauses `DEFAULT_RETRY_AFTER_MS`.
 */
export class RateLimitedError extends DeriverError {
  readonly code = 'RATE_LIMITED' as const;
  constructor(
    message: string,
    readonly retryAfterSeconds: number | null,
  ) {
    super(message);
  }

  /** The wait in ms (`DEFAULT_RETRY_AFTER_MS` when none was named). */
  get retryAfterMs(): number {
    const seconds = this.retryAfterSeconds;
    return seconds !== null && Number.isFinite(seconds) && seconds >= 0
      ? Math.round(seconds * 1000)
      : DEFAULT_RETRY_AFTER_MS;
  }
}

/** An operation that needs authentication while the server runs without it (`AUTH_JWT_SECRET` unset). */
export class AuthDisabledError extends DeriverError {
  readonly code = 'AUTH_DISABLED' as const;
}

/**
 * The store cannot take writes (read-only or full disk, database file removed or replaced, I/O
 * error). Nothing of the failed operation was stored; the server answers 503 until it can write.
 */
export class StoreUnavailableError extends DeriverError {
  readonly code = 'STORE_UNAVAILABLE' as const;
}

/** Thrown by a task handler to fail the task at once, without further retries. */
export class PermanentTaskError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PermanentTaskError';
  }
}

/**
 * Thrown by a task handler when the deriver refuses the work for a reason that is not the task's
 * (the HTTP handler throws it on 401 and 403: a wrong `HANDLER_SECRET` or credentials). The task
 * goes back to pending with no failure counted, and the scheduler pauses dispatch with backoff
 * until an attempt succeeds again: a deployment mistake must not fail the whole queue.
 */
export class HandlerRefusedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'HandlerRefusedError';
  }
}

/** How long a task type pauses after a handler's `RateLimitedError` that named no wait. */
export const DEFAULT_RETRY_AFTER_MS = 1_000;

/** Reason given to a handler's `AbortSignal` when its attempt outlived `timeoutMs`. */
export class TaskTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`task attempt timed out after ${timeoutMs} ms`);
    this.name = 'TaskTimeoutError';
  }
}

/** Reason given to a handler's `AbortSignal` when this process no longer holds the unit's lease. */
export class LeaseLostError extends Error {
  constructor(readonly unitId: number) {
    super(`lease on work unit ${unitId} was lost`);
    this.name = 'LeaseLostError';
  }
}

/** Reason given to a handler's `AbortSignal` when the scheduler shuts down past its deadline. */
export class ShutdownError extends Error {
  constructor() {
    super('scheduler is shutting down');
    this.name = 'ShutdownError';
  }
}

/** Normalises any throwable into an `Error`, for logging and for storing a task's last error. */
export function toError(value: unknown): Error {
  if (value instanceof Error) return value;
  return new Error(typeof value === 'string' ? value : `non-error thrown: ${safeString(value)}`);
}

function safeString(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
