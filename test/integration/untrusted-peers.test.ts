// No trust in what a peer claims (issue 16 §3), with real processes: a worker that claims 186
// finished steps and sends zeroed weights is refused, and the run ends with the same parameters
// as an undisturbed one; in robust mode a rank that sends its gradient times −10 is named,
// evicted, and the others finish the run with a sane accuracy.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readMetrics } from '../../coordinator/run/run-directory.js';
import { CLI, runCli, smallMnistJob, tempDir, waitForCoordinatorPort, writeJob } from '../helpers/cli.js';

interface Summary {
  steps: number;
  worldSize: number;
  test: { accuracy: number };
  events: Array<{ kind: string; rank: number; step: number; detail: string }>;
}

const dir = tempDir('ringtrain-untrusted-');

function summaryOf(out: string): Summary {
  return JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8')) as Summary;
}

/** Rank 0's parameter hash after each step, as metrics.jsonl recorded it. */
function paramHashes(out: string): string[] {
  return readMetrics(path.join(out, 'metrics.jsonl'))
    .filter((r) => r['type'] === 'step')
    .map((r) => String(r['paramHash']));
}

/**
 * `ringtrain coordinator` with one worker process per entry of `workerEnvs`; each presents the
 * job's hash (`--job`), as the attacker did with the hash a refusal leaked.
 */
async function runCluster(job: string, out: string, workerEnvs: NodeJS.ProcessEnv[]): Promise<number | null> {
  const coordinator = runCli(['coordinator', job, '--port', '0', '--host', '127.0.0.1', '--out', out]);
  const port = await waitForCoordinatorPort(out);
  const workers = workerEnvs.map((env) =>
    spawn(
      process.execPath,
      [CLI, 'worker', '--coordinator', `127.0.0.1:${port}`, '--host', '127.0.0.1', '--job', job],
      {
        stdio: 'ignore',
        env: { ...process.env, ...env },
      },
    ),
  );
  const exits = workers.map((w) => new Promise((resolve) => w.on('exit', resolve)));
  const result = await coordinator;
  await Promise.all(exits);
  return result.code === 0 ? 0 : (console.error(result.stderr), result.code);
}

describe('a rejoining worker that claims progress it cannot prove', () => {
  const job = writeJob(dir, smallMnistJob({ workers: 2 }), 'rogue.yaml');
  let baseline: string[];

  beforeAll(async () => {
    const out = path.join(dir, 'undisturbed');
    expect(await runCluster(job, out, [{}, {}])).toBe(0);
    baseline = paramHashes(out);
  });

  it('is refused with the reason in the events, and the run ends with the undisturbed parameters', async () => {
    const out = path.join(dir, 'rogue');
    expect(await runCluster(job, out, [{}, { RINGTRAIN_FAULT_ROGUE_STEP: '186' }])).toBe(0);
    const summary = summaryOf(out);
    const refused = summary.events.filter((e) => e.kind === 'rejoin-refused');
    expect(refused).toHaveLength(1);
    expect(refused[0]?.step).toBe(186);
    expect(refused[0]?.detail).toMatch(/claims at step 186: no parameter hash is recorded/);
    expect(summary.events.filter((e) => e.kind === 'recovery')).toEqual([]);
    // Every step's parameters (rank 0's hash after it) are those of the undisturbed run.
    expect(baseline.length).toBeGreaterThan(10);
    expect(paramHashes(out)).toEqual(baseline);
  });
});

describe('robust mode', () => {
  // Three ranks, so each is judged against the median of two others; no restarts, so the evicted
  // rank is not replaced by a process that inherits the same fault.
  const robustJob = (): string =>
    writeJob(
      dir,
      smallMnistJob({
        workers: { min: 2, max: 3 },
        restartWorkers: 0,
        training: { epochs: 2, batchSize: 48 },
        robust: { gradientNormFactor: 4 },
      }),
      `robust-${Math.random().toString(36).slice(2)}.yaml`,
    );

  it('names and evicts a rank whose gradient is multiplied by -10, and the others finish the run', async () => {
    const out = path.join(dir, 'robust-scaled');
    const result = await runCli(['train', robustJob(), '--workers', '3', '--out', out], {
      env: { RINGTRAIN_FAULT_SCALE_GRADIENT: '2:-10' },
    });
    expect(result.code, result.stderr).toBe(0);
    const summary = summaryOf(out);
    const evictions = summary.events.filter((e) => e.kind === 'eviction');
    expect(evictions.map((e) => e.rank)).toEqual([2]);
    expect(evictions[0]?.detail).toMatch(/robust mode: gradient norm of rank\(s\) 2 is more than 4x the median/);
    // Evicted at its first step: no poisoned update was ever applied.
    expect(evictions[0]?.step).toBe(0);
    expect(summary.worldSize).toBe(2);
    expect(summary.test.accuracy).toBeGreaterThan(0.7);
  });

  it('evicts nobody in an undisturbed run', async () => {
    const out = path.join(dir, 'robust-clean');
    const result = await runCli(['train', robustJob(), '--workers', '3', '--out', out]);
    expect(result.code, result.stderr).toBe(0);
    const summary = summaryOf(out);
    expect(summary.events.filter((e) => e.kind === 'eviction')).toEqual([]);
    expect(summary.worldSize).toBe(3);
  });
});
