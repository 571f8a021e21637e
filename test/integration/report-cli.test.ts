// `ringtrain report` over `bench train --json` and `bench allreduce --json` results (rows in the
// benches' own row types), and its answers to bad inputs: one `ringtrain:` line, exit 2, no page.
// The report over real runs is in monitor-http.test.ts, which has runs at hand.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { AllreduceRow } from '../../bench/allreduce-rows.js';
import type { TrainRow } from '../../bench/train-bench.js';
import { runCli, tempDir } from '../helpers/cli.js';
import { pointsIn } from '../helpers/svg-elements.js';

function trainRow(kind: TrainRow['kind'], workers: number, samplesPerSecond: number): TrainRow {
  return {
    kind,
    workers,
    samplesPerSecond,
    speedup: samplesPerSecond / 800,
    ofCeiling: Number.NaN,
    efficiency: samplesPerSecond / 800 / workers,
    meanStepMs: 10,
    steps: 40,
    peakRssBytes: [],
    ranks: [],
    nonComputeFraction: 0.1,
    finalLoss: 0.5,
    testMetrics: {},
    verified: true,
    backend: 'wasm',
    compression: 'none',
  };
}

function allreduceRow(bytes: number, busbwGBps: number): AllreduceRow {
  return {
    bytes,
    workers: 2,
    compression: 'none',
    seconds: 0.01,
    algbwGBps: busbwGBps,
    busbwGBps,
    tcpGBps: 2.5,
    busbwOverTcp: busbwGBps / 2.5,
    tcpBidirGBps: 1.6,
    busbwOverTcpBidir: busbwGBps / 1.6,
    iterations: 5,
    verified: true,
    maxAbsError: 0,
  };
}

describe('ringtrain report', () => {
  const dir = tempDir();

  it('charts bench train (throughput, efficiency against workers) and bench allreduce (busbw against size)', async () => {
    const train = path.join(dir, 'scaling.json');
    // As bench train writes them: model.fit first, NaN (no N = 1 run) would be null.
    const rows = [
      trainRow('model.fit', 1, 900),
      ...[1, 2, 4].map((n, i) => trainRow('ringtrain', n, 800 + 500 * i)),
      ...[1, 2, 4].map((n, i) => trainRow('bare-grad', n, 1000 + 600 * i)),
    ];
    writeFileSync(train, JSON.stringify(rows));
    const allreduce = path.join(dir, 'ring.json');
    writeFileSync(
      allreduce,
      JSON.stringify([4096, 65536, 1 << 20, 16 << 20, 64 << 20].map((b, i) => allreduceRow(b, 0.2 * (i + 1)))),
    );
    // As `bench allreduce --peer gloo` writes them: gloo rows (1 thread, default) before ringtrain's.
    const peer = path.join(dir, 'peer.json');
    const sizes = [4096, 1 << 20];
    writeFileSync(
      peer,
      JSON.stringify([
        ...sizes.map((b) => ({ ...allreduceRow(b, 0.1), kind: 'gloo', threads: 1 })),
        ...sizes.map((b) => ({ ...allreduceRow(b, 0.15), kind: 'gloo', threads: 2 })),
        ...sizes.map((b) => ({ ...allreduceRow(b, 0.3), kind: 'ringtrain', vsGloo: 2 })),
      ]),
    );
    const out = path.join(dir, 'bench-report');
    const result = await runCli(['report', train, allreduce, peer, '--out', out]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(path.join(out, 'index.html'));
    const svg = (name: string): string => readFileSync(path.join(out, `${name}.svg`), 'utf8');
    // ringtrain and the bare gradient loop at each world size; model.fit is a rule.
    expect(pointsIn(svg('scaling-throughput'))).toHaveLength(6);
    expect(svg('scaling-throughput')).toContain('bare-grad');
    expect(pointsIn(svg('scaling-efficiency'))).toHaveLength(3);
    expect(pointsIn(svg('ring-busbw'))).toHaveLength(5);
    expect(svg('scaling-throughput')).toContain('model.fit');
    expect(svg('ring-busbw')).toContain('raw TCP, one direction'); // the same run's baselines
    expect(pointsIn(svg('peer-busbw'))).toHaveLength(6);
    for (const series of ['gloo (1 thr), 2 workers', 'gloo (2 thr), 2 workers', 'ringtrain none, 2 workers'])
      expect(svg('peer-busbw')).toContain(series);
    const html = readFileSync(path.join(out, 'index.html'), 'utf8');
    for (const name of ['scaling-throughput', 'scaling-efficiency', 'ring-busbw'])
      expect(html).toContain(`${name}.svg`);
  });

  it('answers bad inputs with one ringtrain: line and exit 2, writing no page', async () => {
    const notBench = path.join(dir, 'other.json');
    writeFileSync(notBench, JSON.stringify([{ hello: 1 }]));
    const broken = path.join(dir, 'broken.json');
    writeFileSync(broken, '[{"bytes": 4');
    const emptyDir = path.join(dir, 'empty');
    mkdirSync(emptyDir);
    const cases: Array<[string[], string]> = [
      [[path.join(dir, 'missing')], 'no such file or directory'],
      [[notBench], 'neither `bench train --json` nor `bench allreduce --json` rows'],
      [[broken], 'cannot read it'],
      [[emptyDir], 'not a run directory'],
      [[], "missing required argument 'inputs'"],
    ];
    for (const [inputs, reason] of cases) {
      const out = path.join(dir, 'bad-report');
      const result = await runCli(['report', ...inputs, '--out', out]);
      expect(result.code, result.stderr).toBe(2);
      const lines = result.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^ringtrain: /);
      expect(lines[0]).toContain(reason);
      expect(existsSync(path.join(out, 'index.html'))).toBe(false);
    }
  });
});
