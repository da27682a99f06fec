/**
 * `deriver-live honcho attach|detach --database-url <Honcho's PostgreSQL>` (or `HONCHO_DATABASE_URL`):
 * prints one line saying what was done (attach also says each of its steps as it ends, to
 * `progress`: stderr); exit code 1 with one line on a failure.
 */
import { attachHoncho, detachHoncho } from '../honcho/attach.ts';

export const HONCHO_HELP = `Usage: deriver-live honcho <attach|detach> [--database-url <url>]

  attach    install change capture beside a running Honcho's queue (schema deriver_live_honcho
            and triggers on queue and active_queue_sessions); then start Deriver Live with
            HONCHO_DATABASE_URL=<url> to serve that Honcho's status, pushed
  detach    remove all of it

  --database-url <url>   Honcho's PostgreSQL (default: HONCHO_DATABASE_URL)
`;

export async function honchoCommand(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  /** Where attach's steps are said as they end (the command: stderr). */
  progress: (line: string) => void = () => {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const [action, ...rest] = argv;
  if (action === undefined || action === '--help' || action === '-h')
    return { code: 0, stdout: HONCHO_HELP, stderr: '' };
  let url = env.HONCHO_DATABASE_URL;
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    if (arg === '--database-url') url = rest[++i];
    else if (arg?.startsWith('--database-url=')) url = arg.slice('--database-url='.length);
    else return { code: 1, stdout: '', stderr: `deriver-live honcho: unknown option ${arg} (see --help)\n` };
  }
  if (!url || !/^postgres(ql)?:\/\//.test(url)) {
    return {
      code: 1,
      stdout: '',
      stderr:
        "deriver-live honcho: --database-url (or HONCHO_DATABASE_URL) must name Honcho's PostgreSQL: postgres://...\n",
    };
  }
  try {
    if (action === 'attach') {
      const outcome = await attachHoncho(url, { onStep: (sentence) => progress(`attach ${sentence}\n`) });
      return {
        code: 0,
        stdout:
          outcome === 'attached'
            ? 'attached: start Deriver Live with HONCHO_DATABASE_URL set to this URL to serve its status\n'
            : outcome === 'already-attached'
              ? 'already attached: nothing changed\n'
              : "already attached, by an earlier build: nothing changed. It keeps no per-workspace totals, so a workspace's status is summed over its units (slower on a big queue): run detach, then attach, to add them\n",
        stderr: '',
      };
    }
    if (action === 'detach') {
      await detachHoncho(url);
      return { code: 0, stdout: 'detached: nothing of Deriver Live is left in that database\n', stderr: '' };
    }
    return {
      code: 1,
      stdout: '',
      stderr: `deriver-live honcho: unknown action "${action}" (attach or detach)\n`,
    };
  } catch (error) {
    return {
      code: 1,
      stdout: '',
      stderr: `deriver-live honcho: ${(error as Error).message.replace(/\s+/g, ' ')}\n`,
    };
  }
}
