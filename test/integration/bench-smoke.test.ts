// The benchmark commands end to end at tiny sizes: real rank processes, real trainer runs. The
// rows must be well-formed and verified; speed is printed by the benchmarks, never asserted.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fillPattern, patternError, patternTolerance } from '../../bench/allreduce-rank.js';
import { findTorchPython } from '../../bench/pytorch-peer.js';
import { runCli, smallMnistJob, tempDir, writeJob } from '../helpers/cli.js';

interface AllreduceRow {
  bytes: number;
  workers: number;
  seconds: number;
  algbwGBps: number;
  busbwGBps: number;
  tcpGBps: number;
  tcpBidirGBps: number;
  busbwOverTcpBidir: number;
  transport: string;
  compression: string;
  verified: boolean;
}

function readRows<T>(file: string): T[] {
  return JSON.parse(readFileSync(file, 'utf8')) as T[];
}

describe('ringtrain bench allreduce', () => {
  it.each([
    { workers: 2, compression: 'fp16', sizes: [4096, 1048576] },
    { workers: 3, compression: 'none', sizes: [65536] },
  ])('measures $workers ranks ($compression) and verifies every size', async ({ workers, compression, sizes }) => {
    const json = path.join(tempDir('ringtrain-bench-'), 'allreduce.json');
    const args = [
      'bench',
      'allreduce',
      '--workers',
      String(workers),
      '--sizes',
      sizes.join(','),
      '--compression',
      compression,
      '--iters',
      '2',
      '--warmup',
      '1',
      '--tcp-bytes',
      '16MiB',
      '--tcp-runs',
      '1',
      '--json',
      json,
    ];
    const result = await runCli(args);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/TCP baseline .*: \d+\.\d+ GB\/s/);
    expect(result.stdout).toMatch(/busbw\/TCP/);
    expect(result.stdout).toMatch(/bidirectional TCP .*: \d+\.\d+ GB\/s/);
    expect(result.stdout).toMatch(/busbw\/bidir/);
    const rows = readRows<AllreduceRow>(json);
    expect(rows.map((r) => r.bytes)).toEqual(sizes);
    for (const row of rows) {
      expect(row).toMatchObject({ workers, compression, verified: true });
      expect(row.seconds).toBeGreaterThan(0);
      expect(row.tcpGBps).toBeGreaterThan(0);
      expect(row.tcpBidirGBps).toBeGreaterThan(0);
      expect(row.busbwOverTcpBidir).toBeCloseTo(row.busbwGBps / row.tcpBidirGBps, 6);
      expect(row.algbwGBps).toBeCloseTo(row.bytes / row.seconds / 1e9, 6);
      expect(row.busbwGBps).toBeCloseTo((row.algbwGBps * 2 * (workers - 1)) / workers, 6);
    }
  });

  it('rejects a size that is not whole float32 values, naming the flag', async () => {
    const result = await runCli(['bench', 'allreduce', '--sizes', '4KiB,1001']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/--sizes: 1001 is not a whole number of float32 values/);
  });

  it('has a verification that catches a wrong sum', () => {
    const buffer = new Float32Array(1000);
    fillPattern(buffer, 0, 3);
    const reduced = buffer.map((v) => v * 6); // ranks 0..2 contribute 1, 2 and 3 times the pattern
    expect(patternError(reduced, 3, 3)).toBe(0);
    reduced[417] = reduced[417]! + 1;
    expect(patternError(reduced, 3, 3)).toBeGreaterThan(patternTolerance(3, 'none'));
    expect(patternError(reduced, 3, 4)).toBeGreaterThan(patternTolerance(3, 'bf16')); // a stale iteration
  });
});

interface TrainRow {
  kind: string;
  workers: number;
  samplesPerSecond: number;
  ofWriteCeiling?: number;
  steps: number;
  peakRssBytes: Array<number | null>;
  ranks: Array<{
    rank: number;
    computeMs: number;
    allreduceMs: number;
    allreduceWaitMs: number;
    optimizerMs: number;
    idleMs: number;
  }>;
  verified: boolean;
  ofCeiling: number;
}

describe('ringtrain bench train', () => {
  it('runs the bare gradient loop, model.fit (stock and with our kernels), the trainer at 1 and 2 workers on wasm and the PyTorch peer where present, all verified', async () => {
    const dir = tempDir('ringtrain-bench-');
    const job = writeJob(
      dir,
      smallMnistJob({
        backend: 'wasm',
        data: { format: 'mnist', limit: 600 },
        training: { epochs: 1, batchSize: 32 },
      }),
    );
    const json = path.join(dir, 'train.json');
    const result = await runCli([
      'bench',
      'train',
      job,
      '--workers',
      '1,2',
      '--steps',
      '5',
      '--warmup-steps',
      '1',
      '--peer',
      'pytorch',
      '--json',
      json,
    ]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/ringtrain N=1 \/ model\.fit samples\/s = \d/);
    expect(result.stdout).toMatch(/N=2 \/ N=1 samples\/s = \d/);
    expect(result.stdout).toMatch(/N=1 samples\/s \/ bare gradient loop = \d/);
    expect(result.stdout).toMatch(/ of ceiling /);
    expect(result.stdout).toMatch(/against model\.fit given ringtrain's wasm kernels too: \d/);
    expect(result.stdout).toMatch(/N=2 non-compute share of step time = /);
    expect(result.stdout).toMatch(/ allreduce +wait +optimizer /);
    const rows = readRows<TrainRow>(json);
    // The peer runs where a Python with torch and gloo is installed; elsewhere one line says so.
    const python = await findTorchPython();
    const peerRows =
      python === undefined
        ? []
        : [
            ['pytorch-ddp', 1],
            ['pytorch-ddp', 2],
          ];
    if (python === undefined) expect(result.stdout).toMatch(/# PyTorch peer skipped: no Python with torch and gloo/);
    else expect(result.stdout).toMatch(/N=2 samples\/s \/ PyTorch DDP N=2 = \d/);
    expect(rows.map((r) => [r.kind, r.workers])).toEqual([
      ['model.fit', 1],
      ['fit+kernels', 1],
      ['bare-grad', 1],
      ['bare-grad+write', 1],
      ['bare-grad', 2],
      ['bare-grad+write', 2],
      ['ringtrain', 1],
      ['ringtrain', 2],
      ...peerRows,
    ]);
    for (const row of rows) {
      expect(row.verified, row.kind).toBe(true);
      expect(row.samplesPerSecond).toBeGreaterThan(0);
      expect(row.steps).toBe(5);
    }
    for (const row of rows.filter((r) => r.kind === 'ringtrain'))
      expect(row.ofCeiling).toBeCloseTo(
        row.samplesPerSecond /
          (rows.find((r) => r.kind === 'bare-grad' && r.workers === row.workers)?.samplesPerSecond ?? 0),
        9,
      );
    for (const row of rows.filter((r) => r.kind === 'ringtrain'))
      expect(row.ofWriteCeiling).toBeCloseTo(
        row.samplesPerSecond /
          (rows.find((r) => r.kind === 'bare-grad+write' && r.workers === row.workers)?.samplesPerSecond ?? 0),
        9,
      );
    expect(result.stdout).toMatch(/against the bare loop that also writes the weights each step: \d/);
    for (const row of rows.filter((r) => r.kind === 'ringtrain')) {
      expect(row.ranks.map((r) => r.rank)).toEqual(Array.from({ length: row.workers }, (_, i) => i));
      for (const split of row.ranks) {
        expect(split.computeMs).toBeGreaterThan(0);
        expect(split.allreduceWaitMs).toBeGreaterThanOrEqual(0);
        expect(split.allreduceWaitMs).toBeLessThanOrEqual(split.allreduceMs);
        if (row.workers === 1) expect(split.allreduceWaitMs).toBe(0);
      }
      expect(row.peakRssBytes).toHaveLength(row.workers);
    }
  });

  it('refuses more steps than the job has, naming the flags, before starting anything', async () => {
    const dir = tempDir('ringtrain-bench-');
    const job = writeJob(
      dir,
      smallMnistJob({ data: { format: 'mnist', limit: 600 }, training: { epochs: 1, batchSize: 32 } }),
    );
    const result = await runCli(['bench', 'train', job, '--workers', '1', '--steps', '40', '--no-baseline']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      /--warmup-steps 5 \+ --steps 40 = 45 steps, but the job has 15 \(1 epochs of 15 batches\); lower --steps or raise training.epochs/,
    );
  });
});
