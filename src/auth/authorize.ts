/**
 * What each scope may do (see `scope.ts`). Pure: the decision depends only on the principal and the
 * arguments of the operation, never on what is stored, so a refusal says nothing about whether
 * another tenant's object exists. Every resolver asks before it reads or writes anything.
 */
import { ForbiddenError } from '../errors.ts';
import { describeScope, type Principal, type Scope } from './scope.ts';

/** One thing an operation reaches. */
export type Access =
  /** Task counts for a filter (query or subscription). */
  | {
      readonly kind: 'status';
      readonly workspaceId: string;
      readonly sessionId?: string | undefined;
      readonly observerId?: string | undefined;
      readonly senderId?: string | undefined;
    }
  /** A workspace's settings. */
  | { readonly kind: 'workspace'; readonly workspaceId: string }
  /** Being inside a workspace: getting or creating it, and reading its attributes (any key of it). */
  | { readonly kind: 'member'; readonly workspaceId: string }
  /** A peer: read it or change it. */
  | { readonly kind: 'peer'; readonly workspaceId: string; readonly peerId: string }
  /** A session: read it, change its members or settings. */
  | { readonly kind: 'session'; readonly workspaceId: string; readonly sessionId: string }
  /** Messages sent into a session by these peers. */
  | {
      readonly kind: 'messages';
      readonly workspaceId: string;
      readonly sessionId: string;
      readonly senderIds: readonly string[];
    }
  /** Minting a key for a scope. */
  | { readonly kind: 'mint'; readonly scope: Scope }
  /** Changing a workspace's queue: retrying failed tasks, cancelling pending ones. */
  | { readonly kind: 'queue'; readonly workspaceId: string };

function allows(scope: Scope, access: Access): boolean {
  if (scope.kind === 'admin') return true;
  if (access.kind === 'mint') {
    // A workspace key mints keys inside its workspace; nobody but an admin mints an admin key.
    return (
      scope.kind === 'workspace' &&
      access.scope.kind !== 'admin' &&
      access.scope.workspaceId === scope.workspaceId
    );
  }
  if (access.workspaceId !== scope.workspaceId) return false;
  if (access.kind === 'member') return true;
  switch (scope.kind) {
    case 'workspace':
      return true;
    case 'session':
      return (
        (access.kind === 'status' || access.kind === 'session' || access.kind === 'messages') &&
        access.sessionId === scope.sessionId
      );
    case 'peer':
      switch (access.kind) {
        case 'status':
          return access.observerId === scope.peerId || access.senderId === scope.peerId;
        case 'peer':
          return access.peerId === scope.peerId;
        case 'messages':
          return access.senderIds.every((id) => id === scope.peerId);
        default:
          return false;
      }
  }
}

function describeAccess(access: Access): string {
  switch (access.kind) {
    case 'status': {
      const parts = (['sessionId', 'observerId', 'senderId'] as const)
        .filter((name) => access[name] !== undefined)
        .map((name) => `${name}: "${access[name]}"`);
      return `the status of workspace "${access.workspaceId}"${parts.length ? ` for ${parts.join(', ')}` : ''}`;
    }
    case 'workspace':
    case 'peer':
    case 'session':
      return describeScope(access); // these accesses are shaped as the scope that reaches them
    case 'member':
      return `workspace "${access.workspaceId}"`;
    case 'queue':
      return `retrying or cancelling the tasks of workspace "${access.workspaceId}" (an admin or workspace key's right)`;
    case 'messages':
      return `messages from ${access.senderIds.map((id) => `"${id}"`).join(', ')} in session "${access.sessionId}" of workspace "${access.workspaceId}"`;
    case 'mint':
      return `minting a key for ${describeScope(access.scope)}`;
  }
}

const HINTS: Partial<Record<Scope['kind'], string>> = {
  session: ' (a session key reads status only with its sessionId)',
  peer: ' (a peer key reads status only with its peer as observerId or senderId)',
};

/**
 * For a read by ids that are not scoped by the arguments (message ids): throws, from the arguments
 * alone, unless the principal reaches the status of some session of `workspaceId` for `observerId`,
 * and returns which sessions it reaches. Whatever the read finds in a session it does not reach is
 * answered as if it did not exist, so a refusal never tells that another tenant's object exists.
 */
export function sessionsReached(
  principal: Principal,
  workspaceId: string,
  observerId: string | undefined,
): (sessionId: string) => boolean {
  if (principal.kind === 'open') return () => true;
  const { scope } = principal;
  authorize(principal, {
    kind: 'status',
    workspaceId,
    observerId,
    sessionId: scope.kind === 'session' ? scope.sessionId : undefined,
  });
  return (sessionId) => allows(scope, { kind: 'status', workspaceId, sessionId, observerId });
}

/** Whether `principal` may reach `access` (pure, as `authorize`). */
export const reaches = (principal: Principal, access: Access): boolean =>
  principal.kind === 'open' || allows(principal.scope, access);

/** Throws `ForbiddenError` unless `principal` may reach `access`. */
export function authorize(principal: Principal, access: Access): void {
  if (principal.kind === 'open' || allows(principal.scope, access)) return;

  const hint = access.kind === 'status' ? (HINTS[principal.scope.kind] ?? '') : '';
  throw new ForbiddenError(
    `this key (${describeScope(principal.scope)}) does not reach ${describeAccess(access)}${hint}`,
  );
}
