#!/usr/bin/env node
/**
 * The `deriver-live` command: `start` runs the server, `key create` mints a key; `--help` and
 * `--version`. Each subcommand reads its own arguments (`serve.ts`, `key.ts`).
 */
import { readFileSync } from 'node:fs';
import { packageFile } from '../util/package-files.ts';

const HELP = `Usage: deriver-live <command> [options]

Commands:
  start [flags]        run the server (dashboard at /, GraphQL and GraphiQL at /graphql);
                       deriver-live start --help lists every setting
  key create ...       mint a key with AUTH_JWT_SECRET; deriver-live key --help for the options
  honcho attach|detach attach to a running Honcho's PostgreSQL to serve its status, pushed;
                       deriver-live honcho --help

Options:
  -h, --help           this text
  -v, --version        the version
`;

/** A subcommand's outcome, written out: its output and its exit code. */
function finish(result: { code: number; stdout: string; stderr: string }): void {
  process.stdout.write(result.stdout);
  process.stderr.write(result.stderr);
  process.exitCode = result.code;
}

const [command, ...rest] = process.argv.slice(2);
switch (command) {
  case 'start': {
    const { serve } = await import('./serve.ts');
    await serve(rest);
    break;
  }
  case 'key':
    finish(await (await import('./key.ts')).keyCommand(rest, process.env));
    break;
  case 'honcho':
    finish(
      await (await import('./honcho.ts')).honchoCommand(rest, process.env, (line) =>
        process.stderr.write(line),
      ),
    );
    break;
  case undefined:
  case 'help':
  case '--help':
  case '-h':
    process.stdout.write(HELP);
    break;
  case '--version':
  case '-v': {
    const manifest = JSON.parse(readFileSync(packageFile('../package.json'), 'utf8'));
    process.stdout.write(`${manifest.version}\n`);
    break;
  }
  default:
    process.stderr.write(`deriver-live: unknown command "${command}" (see deriver-live --help)\n`);
    process.exitCode = 1;
}
