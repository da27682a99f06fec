/**
 * The server of `npm run bench:live` (live-server.ts) as a process of its own: started, steered
 * over IPC (its commands), its RSS, and let go. bench:live runs one (live-client.ts); bench:memory
 * starts a fresh one per measurement.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ServerCommand } from './live-server.ts';

export type Command = ServerCommand extends infer C
  ? C extends ServerCommand
    ? Omit<C, 'id'>
    : never
  : never;

export interface LiveServer {
  readonly url: string;
  /** The raw `ws` twin's address. */
  readonly rawUrl: string;
  command(c: Command): Promise<Record<string, unknown>>;
  /** The process's resident memory, KB (Linux `/proc`). */
  rssKb(): number;
  /** Lets the process go (it exits once its IPC channel closes); resolves when it has. */
  release(): Promise<void>;
}

/** Starts live-server.ts (`BENCH_PROFILE_DIR=dir` writes its CPU profile there). */
export async function startLiveServer(): Promise<LiveServer> {
  const child: ChildProcess = spawn(
    process.execPath,
    [
      ...(process.env.BENCH_PROFILE_DIR
        ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE_DIR}`]
        : []),
      '--expose-gc',
      '--import',
      'tsx',
      fileURLToPath(new URL('./live-server.ts', import.meta.url)),
    ],
    { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
  );
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const replies = new Map<number, (message: Record<string, unknown>) => void>();
  let commandId = 0;
  const { url, rawUrl } = await new Promise<{ url: string; rawUrl: string }>((resolve, reject) => {
    void exited.then((code) => reject(new Error(`the bench server exited with ${code} before it was ready`)));
    child.on('message', (message: Record<string, unknown>) => {
      if (message.ready) resolve(message as { url: string; rawUrl: string });
      else replies.get(message.id as number)?.(message);
    });
  });
  return {
    url,
    rawUrl,
    command(c) {
      const id = ++commandId;
      return new Promise((resolve) => {
        replies.set(id, resolve);
        child.send({ ...c, id });
      });
    },
    rssKb: () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1]),
    async release() {
      child.disconnect();
      await exited;
    },
  };
}
