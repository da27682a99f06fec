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
 * Resolves with the match once the process has printed text matching `pattern` on stdout or
 * stderr (what it printed so far, from when this was called); rejects if it exits before.
 */
export function printed(child: ChildProcess, pattern: RegExp): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let out = '';
    const stop = () => {
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
    };
    const onData = (chunk: Buffer) => {
      out += chunk;
      const match = pattern.exec(out);
      if (match) {
        stop();
        resolve(match);
      }
    };
    const onExit = (code: number | null) => {
      stop();
      reject(new Error(`exited with ${code} before printing ${pattern}:\n${out}`));
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
  });
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
