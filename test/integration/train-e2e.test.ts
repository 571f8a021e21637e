// End to end: `ringtrain train` with a coordinator and 2 worker processes on 127.0.0.1, then the
// run directory, the model and the process table are checked.
import { existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { readMetrics } from '../../coordinator/run/run-directory.js';
import { loadModelFromDir } from '../../worker/replica/model-export.js';
import { alive, runCli, smallMnistJob, tempDir, writeJob } from '../helpers/cli.js';
import { slowdownMs, type RankTimings } from '../helpers/slowdown.js';

interface Summary {
  worldSize: number;
  epochs: number;
  globalBatchSize: number;
  steps: number;
  samplesPerSecond: number;
  train: Record<string, number>;
  validation: Record<string, number>;
  test: Record<string, number>;
  workers: Array<{ pid: number }>;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

describe('ringtrain train (2 workers, real processes)', () => {
  const dir = tempDir();
  let result: Awaited<ReturnType<typeof runCli>>;
  let runDir: string;

  beforeAll(async () => {
    const job = writeJob(
      dir,
      smallMnistJob({
        data: { format: 'mnist', limit: 3000 },
        training: { epochs: 2, batchSize: 64 },
        backend: 'wasm',
      }),
    );
    result = await runCli(['train', job, '--runs-dir', path.join(dir, 'runs')]);
    runDir = path.join(dir, 'runs', 'latest');
  });

  it('exits 0 and prints per-epoch lines and the test accuracy', () => {
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(
      /epoch 1\/2 {2}train loss \d\.\d+ {2}validation loss \d\.\d+ {2}validation accuracy 0\.\d+ {2}\d+ samples\/s/,
    );
    expect(result.stdout).toMatch(/epoch 2\/2/);
    expect(result.stdout).toMatch(/test accuracy 0\.\d+/);
  });

  it('writes the run directory with latest pointing at it', () => {
    expect(readlinkSync(runDir)).toMatch(/^\d{8}-\d{6}-test-mlp/);
    for (const file of [
      'job.yaml',
      'summary.json',
      'metrics.jsonl',
      'checkpoints',
      'model/model.json',
      'model/weights.bin',
    ]) {
      expect(existsSync(path.join(runDir, file)), file).toBe(true);
    }
  });

  it('summarises the run with a real accuracy', () => {
    const summary = JSON.parse(readFileSync(path.join(runDir, 'summary.json'), 'utf8')) as Summary;
    expect(summary.worldSize).toBe(2);
    expect(summary.epochs).toBe(2);
    expect(summary.globalBatchSize).toBe(64);
    expect(summary.steps).toBe(2 * Math.ceil(2400 / 64));
    expect(summary.samplesPerSecond).toBeGreaterThan(0);
    expect(summary.test.accuracy).toBeGreaterThan(0.85);
    expect(summary.validation.accuracy).toBeGreaterThan(0.85);
    expect(summary.train['loss']).toBeLessThan((summary.test['loss'] ?? Number.NaN) + 0.5);
    // No worker outlives the coordinator.
    for (const worker of summary.workers) expect(alive(worker.pid)).toBe(false);
  });

  it('logs one metrics line per step and per validation', () => {
    const records = readMetrics(path.join(runDir, 'metrics.jsonl'));
    const steps = records.filter((r) => r['type'] === 'step');
    expect(steps.map((r) => r['step'])).toEqual(Array.from({ length: steps.length }, (_, i) => i));
    expect(records.filter((r) => r['type'] === 'validation')).toHaveLength(2);
    expect((steps[0]?.['ranks'] as unknown[]).length).toBe(2);
    for (const rank of steps.flatMap((s) => s['ranks'] as RankTimings[])) {
      expect(rank.allreduceWaitMs).toBeGreaterThanOrEqual(0);
      expect(rank.allreduceWaitMs).toBeLessThanOrEqual(rank.allreduceMs);
    }
  });

  it('keeps the newest checkpoints only', () => {
    const names = readdirSync(path.join(runDir, 'checkpoints')).filter((n) => n.startsWith('step-'));
    expect(names.length).toBeGreaterThan(0);
    expect(names.length).toBeLessThanOrEqual(3);
  });

  it('saves a model that tf.loadLayersModel reads back and that predicts digits', async () => {
    await tf.setBackend('cpu');
    const model = await loadModelFromDir(path.join(runDir, 'model'));
    const { loadDataset } = await import('../../shared/data/dataset.js');
    const { loadJob } = await import('../../shared/job.js');
    const ds = loadDataset(loadJob(path.join(runDir, 'job.yaml')));
    const n = ds.test.count;
    const probs = model.predict(tf.tensor2d(ds.test.x, [n, 784])) as tf.Tensor;
    const predicted = (await probs.argMax(1).data()) as Int32Array;
    const labels = (await tf.tensor2d(ds.test.y, [n, 10]).argMax(1).data()) as Int32Array;
    const correct = predicted.reduce((acc, p, i) => acc + (p === labels[i] ? 1 : 0), 0);
    const summary = JSON.parse(readFileSync(path.join(runDir, 'summary.json'), 'utf8')) as {
      test: { accuracy: number };
    };
    expect(correct / n).toBeCloseTo(summary.test.accuracy, 2);
  });

  it("with a slow rank, reports rank 0's all-reduce as mostly waiting for rank 1, and rank 1's as not", async () => {
    // Rank 1 computes longer each step by a multiple of the compute times measured above, on this
    // machine as busy as it is now, so rank 0 enters every gradient all-reduce that much earlier.
    const slowMs = slowdownMs(path.join(runDir, 'metrics.jsonl'));
    const job = writeJob(
      dir,
      smallMnistJob({ data: { format: 'mnist', limit: 600 }, training: { epochs: 1, batchSize: 32 }, backend: 'wasm' }),
      'slow-rank.yaml',
    );
    const slow = await runCli(['train', job, '--runs-dir', path.join(dir, 'slow-runs')], {
      env: { RINGTRAIN_FAULT_SLOW_RANK: `1:${slowMs}` },
    });
    expect(slow.code, slow.stderr).toBe(0);
    const steps = readMetrics(path.join(dir, 'slow-runs', 'latest', 'metrics.jsonl')).filter(
      (r) => r['type'] === 'step',
    );
    expect(steps.length).toBeGreaterThan(5);
    const waits = (rank: number): number[] =>
      steps.flatMap((s) => (s['ranks'] as RankTimings[]).filter((r) => r.rank === rank).map((r) => r.allreduceWaitMs));
    // Half the slow-down splits "waited for it" from "did not": noise would have to exceed it in most steps.
    expect(median(waits(0))).toBeGreaterThanOrEqual(slowMs / 2);
    expect(median(waits(1))).toBeLessThan(slowMs / 2);
  });
});
