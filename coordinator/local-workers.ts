// Embedded mode: the coordinator starts N worker processes on this machine
// (`node <cli> worker --coordinator 127.0.0.1:P`), one per GPU when GPUs are listed, and makes
// sure none outlives it.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';
import type { Logger } from '../shared/logger.js';

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

/** Path of the compiled CLI entry (dist/shared/cli/main.js), found relative to this module. */
export function cliEntry(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  return path.resolve(here, '../shared/cli/main.js');
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

  /** Environment a worker gets: its own GPU only, and which one it is. */
  static workerEnv(gpu: number | undefined, base: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
    if (gpu === undefined) return { ...base };
    return { ...base, CUDA_VISIBLE_DEVICES: String(gpu), RINGTRAIN_GPU_INDEX: String(gpu) };
  }

  private spawnOne(index: number): void {
    const gpu = this.options.gpus[index];
    const args = [
      cliEntry(),
      'worker',
      '--coordinator',
      this.options.coordinatorAddress,
      '--host',
      '127.0.0.1',
      '--rank-hint',
      String(index),
      '--reconnect-ms',
      '0',
    ];
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: LocalWorkers.workerEnv(gpu, { ...process.env, ...this.options.env }),
    });
    this.children[index] = child;
    child.on('exit', (code, signal) => {
      if (this.stopping || this.children[index] !== child) return;
      this.options.logger.warn({ index, pid: child.pid, code, signal }, 'local worker exited');
      this.options.onExit?.(index, code, signal);
    });
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
