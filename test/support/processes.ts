/** Helpers for tests and benchmarks that run servers as real child processes. */
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** The URL a server process prints (`... listening on URL`); rejects if it exits before. */
export async function listeningUrl(child: ChildProcess): Promise<string> {
  const [, url = ''] = await printed(child, /listening on (\S+)/);
  return url;
}

/**
 * What a child process prints on stdout and stderr from when this is called, in arrival order, and
 * its exit; `nth` resolves with the `nth` match of `pattern` in it once printed, and rejects if
 * the process exits before. `stop()` stops listening.
 */
export function watchOutput(child: ChildProcess) {
  let out = '';
  let stderr = '';
  const checks = new Set<() => void>();
  const onStdout = (chunk: Buffer) => {
    out += chunk;
    for (const check of checks) check();
  };
  const onStderr = (chunk: Buffer) => {
    stderr += chunk;
    onStdout(chunk);
  };
  child.stdout?.on('data', onStdout);
  child.stderr?.on('data', onStderr);
  let exited: (code: number | null) => void = () => {};
  const exit = new Promise<number | null>((resolve) => {
    exited = resolve;
  });
  child.once('exit', exited);
  return {
    exit,
    stderr: () => stderr,
    nth(pattern: RegExp, nth = 1): Promise<RegExpExecArray> {
      const global = pattern.global ? pattern : new RegExp(pattern.source, `${pattern.flags}g`);
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = [...out.matchAll(global)][nth - 1];
          if (found === undefined) return;
          checks.delete(check);
          resolve(found);
        };
        checks.add(check);
        check();
        void exit.then((code) => {
          if (checks.delete(check))
            reject(new Error(`exited with ${code} before printing ${pattern} (${nth}):\n${out}`));
        });
      });
    },
    stop() {
      child.stdout?.off('data', onStdout);
      child.stderr?.off('data', onStderr);
      child.off('exit', exited);
    },
  };
}

/** The first match of `pattern` in what the process prints from now on (see `watchOutput`). */
export async function printed(child: ChildProcess, pattern: RegExp): Promise<RegExpExecArray> {
  const output = watchOutput(child);
  try {
    return await output.nth(pattern);
  } finally {
    output.stop();
  }
}

/** Resident memory of a process, in MB (Linux `/proc`). */
export function rssMb(pid: number): number {
  const match = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return Number(match?.[1]) / 1024;
}

/** A TCP port on 127.0.0.1 that was free a moment ago (for a server to start on, or nothing to answer). */
export async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  return port;
}
