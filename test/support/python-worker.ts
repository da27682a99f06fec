/** The example Python worker (`examples/python-worker/worker.py`) as a real child process. */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { listeningUrl } from './processes.ts';

/** One line the worker writes per task it did. */
export interface WorkerRecord {
  readonly taskId: string;
  readonly type: 'representation' | 'summary';
  readonly attempt: number;
  readonly sessionId: string;
  readonly observerId: string | null;
  readonly senderId: string | null;
  readonly seqs: number[];
  readonly summary: { level: string; fromSeq: number; toSeq: number } | null;
  readonly words: Record<string, number>;
  /** The client port of the connection the request came on. */
  readonly connection: number;
  /** The size of the batch it came in; `null` when it came alone (an unbatched type). */
  readonly batch: number | null;
}

export interface PythonWorker {
  readonly url: string;
  /** What the worker did so far, in the order it did it. */
  records(): WorkerRecord[];
  stop(): Promise<void>;
}

const SCRIPT = new URL('../../examples/python-worker/worker.py', import.meta.url).pathname;

export async function startPythonWorker(options: {
  readonly output: string;
  readonly secret?: string;
  readonly port?: number;
  readonly slowSeconds?: number;
  /** The key the worker checks webhook signatures with (its /webhook path). */
  readonly webhookSecret?: string;
}): Promise<PythonWorker> {
  const child: ChildProcess = spawn('python3', [SCRIPT, '--port', String(options.port ?? 0)], {
    env: {
      ...process.env,
      HANDLER_SECRET: options.secret ?? '',
      OUTPUT: options.output,
      SLOW_SECONDS: String(options.slowSeconds ?? 5),
      WEBHOOK_SECRET: options.webhookSecret ?? '',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await listeningUrl(child);
  return {
    url,
    records: () =>
      existsSync(options.output)
        ? readFileSync(options.output, 'utf8')
            .split('\n')
            .filter(Boolean)
            .map((line) => JSON.parse(line) as WorkerRecord)
        : [],
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }),
  };
}
