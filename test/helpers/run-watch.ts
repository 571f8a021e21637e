// Watching a real run from a test: the worker processes a coordinator spawned, and the steps its
// metrics.jsonl has logged. Bounds only catch hangs; nothing here decides by how fast a run is.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { readMetrics } from '../../coordinator/run/run-directory.js';

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
