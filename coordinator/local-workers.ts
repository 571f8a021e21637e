// Worker processes started on this machine: by the coordinator in embedded mode (`train`), and by
// `ringtrain worker --local-workers/--gpus` (one per GPU, like torchrun). Both start them through
// `spawnWorkerProcess`, so every local worker runs with the same Node flags and environment.
// None outlives what started it: a stdin pipe that closes with the parent makes a worker exit by
// itself when the parent dies, even by SIGKILL (shared/parent-watch.ts); in embedded mode
// `LocalWorkers` also kills them in an exit handler.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';
import type { Logger } from '../shared/logger.js';
import { EXIT_WITH_PARENT_FLAG, parentWatchPreload } from '../shared/parent-watch.js';
import { STDERR_RANK_ENV } from '../shared/stderr-prefix.js';

/** glibc's own default (128 KiB), set explicitly so that glibc stops adjusting it (see workerEnv). */
export const PINNED_MMAP_THRESHOLD = String(128 * 1024);

/**
 * Node flags every worker process runs with. A step allocates megabytes of short-lived objects
 * (tensor handles, messages), so V8 grows its young generation to the 16 MB-per-semi-space
 * maximum, 32–48 MB of RSS for garbage that dies within a step. Capped at 2 MB, peak worker RSS
 * on the default job fell by 20–30 MiB at unchanged samples/s (bench/RESULTS.md).
 */
export const WORKER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2'];

export interface LocalWorkerOptions {
  count: number;
  coordinatorAddress: string;
  /** GPU index per worker (sets CUDA_VISIBLE_DEVICES); empty = no GPU pinning. */
  gpus: number[];
  logger: Logger;
  /** Extra environment for every worker. */
  env?: NodeJS.ProcessEnv;
  /** Called when a worker exits before `stopAll`. */
  onExit?: (index: number, code: number | null, signal: NodeJS.Signals | null) => void;
}

/** Path of the compiled CLI entry (dist/cli/main.js), found relative to this module. */
export function cliEntry(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  return path.resolve(here, '../cli/main.js');
}

export interface WorkerProcessOptions {
  /** Arguments after `ringtrain worker` (--coordinator, --host, ...). */
  args: readonly string[];
  /** The one GPU this worker may use; undefined = no pinning. */
  gpu: number | undefined;
  /** Environment to start from (the caller's, plus any extras). */
  env: NodeJS.ProcessEnv;
  /** Have the worker start each stderr line with `[rank R]` (R: this rank until it joins a ring, then its rank there). @default no prefix */
  stderrRank?: number;
}

/**
 * Node's argv for one `ringtrain worker` process: the worker Node flags, the parent-watch
 * preload, the CLI, its arguments, and the flag that makes it exit with its parent.
 */
export function workerProcessArgv(args: readonly string[]): string[] {
  return [...WORKER_NODE_FLAGS, ...parentWatchPreload(), cliEntry(), 'worker', ...args, EXIT_WITH_PARENT_FLAG];
}

/**
 * Starts one `ringtrain worker` process on this machine: the one way local workers are started.
 * Its stdin is a pipe the parent never writes to; its output goes to the parent's (stderr lines
 * prefixed with its rank when `stderrRank` is given).
 */
export function spawnWorkerProcess(options: WorkerProcessOptions): ChildProcess {
  const child = spawn(process.execPath, workerProcessArgv(options.args), {
    stdio: ['pipe', 'inherit', 'inherit'],
    env: LocalWorkers.workerEnv(options.gpu, {
      ...options.env,
      ...(options.stderrRank !== undefined ? { [STDERR_RANK_ENV]: String(options.stderrRank) } : {}),
    }),
  });
  child.stdin?.on('error', () => undefined); // EPIPE once the worker is gone: nothing to do
  return child;
}

export class LocalWorkers {
  private readonly children: ChildProcess[] = [];
  private stopping = false;

  constructor(private readonly options: LocalWorkerOptions) {}

  start(): void {
    for (let index = 0; index < this.options.count; index++) this.spawnOne(index);
  }

  get pids(): number[] {
    return this.children.map((c) => c.pid ?? -1);
  }

  /**
   * Environment a worker gets: its own GPU only, and which one it is; and glibc's mmap threshold
   * pinned (unless already set). By default glibc raises that threshold each time a large block
   * is freed, after which the worker's per-step buffers (gRPC frames, ArrayBuffers of a few
   * hundred KB) come from the brk heap, which fragments and never shrinks: RSS then grew ≈ 12 KB
   * per step without bound. Pinned, they are mmapped and returned to the system when freed.
   */
  static workerEnv(gpu: number | undefined, base: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
    const env = { MALLOC_MMAP_THRESHOLD_: PINNED_MMAP_THRESHOLD, ...base };
    if (gpu === undefined) return env;
    return { ...env, CUDA_VISIBLE_DEVICES: String(gpu), RINGTRAIN_GPU_INDEX: String(gpu) };
  }

  private spawnOne(index: number): void {
    const child = spawnWorkerProcess({
      args: [
        '--coordinator',
        this.options.coordinatorAddress,
        '--host',
        '127.0.0.1',
        // It is reached on loopback only, so it listens there only, TLS or not.
        '--bind',
        '127.0.0.1',
        '--rank-hint',
        String(index),
        '--reconnect-ms',
        '0',
      ],
      gpu: this.options.gpus[index],
      env: { ...process.env, ...this.options.env },
      stderrRank: index,
    });
    this.children[index] = child;
    child.on('exit', (code, signal) => {
      if (this.stopping || this.children[index] !== child) return;
      this.options.logger.warn({ index, workerPid: child.pid, code, signal }, 'local worker exited');
      this.options.onExit?.(index, code, signal);
    });
  }

  /** Pids of the local workers still running. */
  alivePids(): number[] {
    return this.children.filter((c) => c.exitCode === null && c.signalCode === null).map((c) => c.pid ?? -1);
  }

  /** Starts a replacement for worker `index` (its predecessor exited). */
  respawn(index: number): void {
    if (!this.stopping) this.spawnOne(index);
  }

  /** SIGKILLs the local worker with this pid (an evicted, hung worker), if it is ours. */
  kill(pid: number): void {
    this.children.find((c) => c.pid === pid && c.exitCode === null && c.signalCode === null)?.kill('SIGKILL');
  }

  /** Waits up to `graceMs` for workers to leave by themselves, then SIGKILLs the rest. */
  async stopAll(graceMs = 5_000): Promise<void> {
    this.stopping = true;
    const alive = this.children.filter((c) => c.exitCode === null && c.signalCode === null);
    await Promise.all(
      alive.map(
        (child) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => {
              child.kill('SIGKILL');
            }, graceMs);
            child.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            if (child.exitCode !== null || child.signalCode !== null) {
              clearTimeout(timer);
              resolve();
            }
          }),
      ),
    );
  }

  /** Last-resort synchronous kill, for process exit handlers. */
  killAllNow(): void {
    this.stopping = true;
    for (const child of this.children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}
