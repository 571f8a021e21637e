// Liveness with real processes: a worker whose compute thread is blocked in one long synchronous
// step keeps beating from its heartbeat thread and is not evicted, while a SIGSTOPped worker
// (every thread stopped) is. hangMs is small here, so the long step is several times longer.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readMetrics } from '../../coordinator/run/run-directory.js';
import { alive, CLI, runCli, smallMnistJob, tempDir, writeJob } from '../helpers/cli.js';

interface Summary {
  steps: number;
  recoveries: number;
  events: Array<{ kind: string; rank: number; step: number; detail: string }>;
}

const dir = tempDir('ringtrain-liveness-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// 800 train samples, batch 32: 25 steps.
const TOTAL_STEPS = 25;
const HANG_MS = 3000;
const job = (workers: unknown): string =>
  writeJob(
    dir,
    smallMnistJob({
      data: { format: 'mnist', limit: 1000, split: { validation: 0.1, test: 0.1 } },
      workers,
      restartWorkers: 0,
      checkpoint: { everySteps: 100, keep: 1 },
      timeouts: { hangMs: HANG_MS, collectiveMs: 60_000, replacementMs: 1000 },
    }),
    `liveness-${Math.random().toString(36).slice(2)}.yaml`,
  );

const summaryOf = (out: string): Summary => JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8')) as Summary;

function stepsLogged(out: string): number[] {
  const file = path.join(out, 'metrics.jsonl');
  if (!existsSync(file)) return [];
  return readMetrics(file)
    .filter((r) => r['type'] === 'step')
    .map((r) => Number(r['step']));
}

describe('liveness', () => {
  it('a step that blocks every worker for 4× hangMs is slow, not hung: no eviction, the run finishes', async () => {
    const out = path.join(dir, 'long-step');
    const result = await runCli(['train', job(2), '--out', out], {
      env: { RINGTRAIN_FAULT_BLOCK_STEP: `2:${4 * HANG_MS}` },
      timeoutMs: 280_000,
    });
    expect(result.code, result.stderr).toBe(0);
    const summary = summaryOf(out);
    expect(summary.events.filter((e) => e.kind === 'eviction' || e.kind === 'failure')).toEqual([]);
    expect(summary.recoveries).toBe(0);
    expect(new Set(stepsLogged(out)).size).toBe(TOTAL_STEPS);
    // The coordinator saw the beats say what took so long.
    expect(result.stdout).toMatch(
      /has been busy with step 2 for \d+ s; its heartbeats arrive, so it is slow, not hung/,
    );
  }, 300_000);

  it('a SIGSTOPped worker (all its threads stopped) is still evicted after hangMs', async () => {
    const out = path.join(dir, 'sigstop');
    const child = spawn(process.execPath, [CLI, 'train', job({ min: 1, max: 2 }), '--out', out], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.resume();
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    let pids: number[] = [];
    try {
      for (let i = 0; i < 2400 && stepsLogged(out).length < 5; i++) await new Promise((r) => setTimeout(r, 50));
      pids = execFileSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' })
        .trim()
        .split('\n')
        .map(Number);
      expect(pids).toHaveLength(2);
      process.kill(pids[1] as number, 'SIGSTOP');
      expect(await exited, stderr).toBe(0);
    } finally {
      // On a failed expectation, leave no process behind (a stopped one included).
      for (const pid of [...pids, child.pid ?? -1]) if (alive(pid)) process.kill(pid, 'SIGKILL');
    }
    const eviction = summaryOf(out).events.find((e) => e.kind === 'eviction');
    expect(eviction?.detail).toMatch(/sent nothing for \d+ s/);
    expect(new Set(stepsLogged(out)).size).toBe(TOTAL_STEPS);
    for (let i = 0; i < 50 && pids.some(alive); i++) await new Promise((r) => setTimeout(r, 100));
    expect(pids.filter(alive)).toEqual([]);
  }, 300_000);
});
