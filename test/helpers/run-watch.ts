// Watching a real run from a test: the worker processes a coordinator spawned, and the steps its
// metrics.jsonl has logged. Bounds only catch hangs; nothing here decides by how fast a run is.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { expect } from 'vitest';
import { readMetrics } from '../../coordinator/run/run-directory.js';
import { alive, CLI } from './cli.js';

/** How a started ringtrain command ended. */
export interface CliExit {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Starts a ringtrain command in the background; `done` resolves with its exit code and output. */
export function startCli(args: string[], env: NodeJS.ProcessEnv = {}): { child: ChildProcess; done: Promise<CliExit> } {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<CliExit>((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr })));
  return { child, done };
}

/** Expects every process in `pids` to be gone; bounded (60 s) only to catch one that never exits. */
export async function expectNoLeftovers(pids: number[]): Promise<void> {
  for (let i = 0; i < 600 && pids.some(alive); i++) await new Promise((r) => setTimeout(r, 100));
  expect(pids.filter(alive)).toEqual([]);
}

/** The pids of `coordinatorPid`'s child processes (its embedded workers); [] when it has none. */
export function workerPids(coordinatorPid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(coordinatorPid)], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** Waits (bounded) until the run's metrics.jsonl holds at least `steps` step lines. */
export async function waitForSteps(out: string, steps: number, timeoutMs = 300_000): Promise<void> {
  const file = path.join(out, 'metrics.jsonl');
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline;) {
    if (existsSync(file) && readMetrics(file).filter((r) => r['type'] === 'step').length >= steps) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${file} did not reach ${steps} steps`);
}
