/**
 * `deriver-live key create`: mints a key offline with the server's secret (`AUTH_JWT_SECRET`), the
 * same HS256 key the `createKey` mutation makes. It is how the first (admin) key comes to be: no
 * running server and no earlier key are needed, only the secret the server is started with.
 * The arguments are checked by the same rules as `createKey`'s (`auth/key-input.ts`).
 */
import { parseArgs } from 'node:util';
import { createKeyInput } from '../auth/key-input.ts';
import { createKeyring } from '../auth/keyring.ts';
import { describeScope } from '../auth/scope.ts';
import { argumentError } from '../server/cli.ts';
import { loadConfig } from '../server/config.ts';
import { parseDurationMs } from '../util/duration.ts';

/** What a command prints and its exit status; `bin.ts` writes it out. */
export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export const KEY_HELP = `Usage: deriver-live key create (--admin | --workspace W [--session S | --peer P]) [--expires-in D] [--json]

Mints a key signed with AUTH_JWT_SECRET (read from the environment, as the server reads it) and
prints it on stdout. Clients send it as "Authorization: Bearer <key>".

  --admin            reaches everything, and can mint any key (give it to operators only)
  --workspace W      reaches everything in workspace W, and can mint keys inside it
  --session S        with --workspace: only session S (its status, messages, members)
  --peer P           with --workspace: only what peer P observes or sends
  --expires-in D     lifetime: 90s, 30m, 12h, 7d, 52w (default: the key does not expire)
  --json             print {"key", "scope", "expiresAt"} instead of the bare key

Example:  export AUTH_JWT_SECRET=$(openssl rand -hex 32)
          deriver-live key create --workspace acme --expires-in 30d
`;

const FLAG_OF: Record<string, string> = {
  admin: '--admin',
  workspaceId: '--workspace',
  sessionId: '--session',
  peerId: '--peer',
  expiresInSeconds: '--expires-in',
};

const refuse = (message: string): CommandResult => ({
  code: 1,
  stdout: '',
  stderr: `deriver-live key: ${message}\n`,
});

export async function keyCommand(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  clock: () => number = Date.now,
): Promise<CommandResult> {
  let parsed: ReturnType<typeof parseKeyArgs>;
  try {
    parsed = parseKeyArgs(argv);
  } catch (error) {
    return refuse(argumentError(error, argv, 'deriver-live key --help'));
  }
  const { values, positionals } = parsed;
  if (values.help) return { code: 0, stdout: KEY_HELP, stderr: '' };
  if (positionals[0] !== 'create' || positionals.length > 1) {
    return refuse(
      positionals.length === 0
        ? 'say what to do: deriver-live key create ... (see deriver-live key --help)'
        : `unknown command "${positionals.join(' ')}": the command is "key create" (see deriver-live key --help)`,
    );
  }
  let expiresInSeconds: number | null = null;
  if (values['expires-in'] !== undefined) {
    const ms = parseDurationMs(values['expires-in']);
    expiresInSeconds = ms === null ? null : ms / 1000;
    if (expiresInSeconds === null) {
      return refuse(
        `--expires-in must be a duration such as 90s, 30m, 12h, 7d or 52w (got "${values['expires-in']}")`,
      );
    }
  }
  const input = createKeyInput.safeParse({
    admin: values.admin ?? null,
    workspaceId: values.workspace ?? null,
    sessionId: values.session ?? null,
    peerId: values.peer ?? null,
    expiresInSeconds,
  });
  if (!input.success) {
    const issue = input.error.issues[0];
    const flag = FLAG_OF[String(issue?.path[0] ?? '')] ?? '';
    const message = (issue?.message ?? 'invalid arguments')
      .replace('(or is an admin key: admin: true)', '(--workspace W), or is an admin key (--admin)')
      .replace('names no workspace, session or peer', 'takes no --workspace, --session or --peer');
    return refuse(flag ? `${flag}: ${message}` : message);
  }
  let secret: string | null;
  try {
    secret = loadConfig({ AUTH_JWT_SECRET: env.AUTH_JWT_SECRET }).authJwtSecret;
  } catch (error) {
    return refuse(error instanceof Error ? error.message : String(error));
  }
  if (!secret) {
    return refuse(
      'AUTH_JWT_SECRET is not set: set it to the secret the server runs with (e.g. the output of: openssl rand -hex 32)',
    );
  }
  const { scope } = input.data;
  const expiresAt = expiresInSeconds === null ? null : clock() + expiresInSeconds * 1000;
  const key = await createKeyring({ secret, clock }).mint(scope, expiresAt);
  const until = expiresAt === null ? 'does not expire' : `expires ${new Date(expiresAt).toISOString()}`;
  return {
    code: 0,
    stdout: values.json
      ? `${JSON.stringify({ key, scope, expiresAt: expiresAt === null ? null : new Date(expiresAt).toISOString() })}\n`
      : `${key}\n`,
    stderr: `deriver-live key: a key for ${describeScope(scope)}; it ${until}\n`,
  };
}

function parseKeyArgs(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: {
      admin: { type: 'boolean' },
      workspace: { type: 'string' },
      session: { type: 'string' },
      peer: { type: 'string' },
      'expires-in': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}
