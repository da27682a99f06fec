/**
 * Who is calling and what they may reach. A key (a JWT with Honcho's claims) grants exactly one
 * scope; without `AUTH_JWT_SECRET` every caller is `open` and reaches everything.
 *
 * | claims      | scope     | reaches                                                   |
 * |-------------|-----------|-----------------------------------------------------------|
 * | `ad: true`  | admin     | everything, and minting any key                           |
 * | `w`         | workspace | everything in workspace `w`, and minting keys inside it   |
 * | `w` + `s`   | session   | session `s` of `w`: its status, messages and members      |
 * | `w` + `p`   | peer      | what peer `p` of `w` observes or sends, and the peer itself |
 */
export type Scope =
  | { readonly kind: 'admin' }
  | { readonly kind: 'workspace'; readonly workspaceId: string }
  | { readonly kind: 'session'; readonly workspaceId: string; readonly sessionId: string }
  | { readonly kind: 'peer'; readonly workspaceId: string; readonly peerId: string };

/** The caller of one operation. */
export type Principal =
  | { readonly kind: 'open' }
  | {
      readonly kind: 'key';
      readonly scope: Scope;
      /** When the key stops being valid, in epoch ms; `null` for a key without `exp`. */
      readonly expiresAt: number | null;
    };

/** The principal of every caller when authentication is off. */
export const OPEN: Principal = { kind: 'open' };

/** A short description of a scope, for messages (`workspace "w"`, `peer "p" of workspace "w"`). */
export function describeScope(scope: Scope): string {
  switch (scope.kind) {
    case 'admin':
      return 'admin';
    case 'workspace':
      return `workspace "${scope.workspaceId}"`;
    case 'session':
      return `session "${scope.sessionId}" of workspace "${scope.workspaceId}"`;
    case 'peer':
      return `peer "${scope.peerId}" of workspace "${scope.workspaceId}"`;
  }
}

/** A stable key for per-client limits: the scope a key grants (keys of one scope share a budget). */
export function scopeKey(scope: Scope): string {
  switch (scope.kind) {
    case 'admin':
      return 'admin';
    case 'workspace':
      return `w:${scope.workspaceId}`;
    case 'session':
      return `s:${scope.workspaceId}/${scope.sessionId}`;
    case 'peer':
      return `p:${scope.workspaceId}/${scope.peerId}`;
  }
}
