/**
 * Keys: JWTs signed with HS256 and the server's secret, carrying Honcho's claims (`ad`, `w`, `s`,
 * `p`, `exp`). `verify` turns a bearer token into a principal or throws `UnauthenticatedError`;
 * `mint` signs a key for a scope.
 */
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { UnauthenticatedError } from '../errors.ts';
import type { Principal, Scope } from './scope.ts';

export interface KeyringOptions {
  /** The HS256 secret (`AUTH_JWT_SECRET`); at least 32 bytes. */
  readonly secret: string;
  /** Milliseconds since the epoch, for expiry. @default Date.now */
  readonly clock?: () => number;
}

export interface Keyring {
  /** The principal of a bearer token; throws `UnauthenticatedError` when it is missing or invalid. */
  verify(token: string | null | undefined): Promise<Principal>;
  /** Signs a key for `scope`, valid until `expiresAt` (epoch ms) or forever when `null`. */
  mint(scope: Scope, expiresAt: number | null): Promise<string>;
}

/** Smallest secret accepted: HS256 keys shorter than the hash are weak (RFC 7518, section 3.2). */
export const MIN_SECRET_BYTES = 32;

const ALGORITHM = 'HS256';

/**
 * Reads `Bearer <token>` (any case); `null` when the value is absent. A value in another shape
 * (another scheme, the prefix twice, no prefix) throws `UnauthenticatedError` saying so, rather
 * than "a key is required" to someone who sent one.
 */
export function bearerToken(value: unknown): string | null {
  if (typeof value !== 'string' || value.trim() === '') return null;
  const match = /^\s*bearer\s+(\S+)\s*$/i.exec(value);
  if (match?.[1] && !/^bearer$/i.test(match[1])) return match[1];
  throw new UnauthenticatedError(
    'the Authorization header must be "Bearer <key>": the word Bearer once, a space, then the key',
  );
}

function claimsOf(scope: Scope): Record<string, unknown> {
  switch (scope.kind) {
    case 'admin':
      return { ad: true };
    case 'workspace':
      return { w: scope.workspaceId };
    case 'session':
      return { w: scope.workspaceId, s: scope.sessionId };
    case 'peer':
      return { w: scope.workspaceId, p: scope.peerId };
  }
}

const isId = (value: unknown): value is string => typeof value === 'string' && value.length > 0;

function scopeOf(claims: Record<string, unknown>): Scope {
  if (claims.ad === true) return { kind: 'admin' };
  const { w, s, p } = claims;
  if (!isId(w)) throw new UnauthenticatedError('the key grants no scope (it has neither "ad" nor "w")');
  if (s !== undefined && p !== undefined) {
    throw new UnauthenticatedError(
      'the key names both a session ("s") and a peer ("p"); a key has one scope',
    );
  }
  if (s !== undefined) {
    if (!isId(s)) throw new UnauthenticatedError('the key\'s "s" claim must be a session id');
    return { kind: 'session', workspaceId: w, sessionId: s };
  }
  if (p !== undefined) {
    if (!isId(p)) throw new UnauthenticatedError('the key\'s "p" claim must be a peer id');
    return { kind: 'peer', workspaceId: w, peerId: p };
  }
  return { kind: 'workspace', workspaceId: w };
}

export function createKeyring(options: KeyringOptions): Keyring {
  const secret = new TextEncoder().encode(options.secret);
  if (secret.byteLength < MIN_SECRET_BYTES) {
    throw new RangeError(`the secret must be at least ${MIN_SECRET_BYTES} bytes long`);
  }
  const clock = options.clock ?? Date.now;
  return {
    async verify(token) {
      if (!token) {
        throw new UnauthenticatedError('a key is required: send "Authorization: Bearer <key>"');
      }
      let payload: Record<string, unknown>;
      try {
        ({ payload } = await jwtVerify(token, secret, {
          algorithms: [ALGORITHM],
          currentDate: new Date(clock()),
        }));
      } catch (error) {
        throw new UnauthenticatedError(
          error instanceof joseErrors.JWTExpired
            ? 'the key has expired'
            : "the key is not valid (malformed, or not signed with this server's secret)",
        );
      }
      const exp = payload.exp;
      return { kind: 'key', scope: scopeOf(payload), expiresAt: typeof exp === 'number' ? exp * 1000 : null };
    },
    async mint(scope, expiresAt) {
      const jwt = new SignJWT(claimsOf(scope)).setProtectedHeader({ alg: ALGORITHM, typ: 'JWT' });
      jwt.setIssuedAt(Math.floor(clock() / 1000));
      if (expiresAt !== null) jwt.setExpirationTime(Math.floor(expiresAt / 1000));
      return jwt.sign(secret);
    },
  };
}
