// `ringtrain bench data` end to end at tiny sizes: real packs, real worker processes. The rows
// must be complete (every measured step reported by every rank, peak RSS read for each worker);
// speed and memory ratios are printed by the benchmark, never asserted.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { DataRow } from '../../bench/data-bench.js';
import { runCli, tempDir } from '../helpers/cli.js';

describe('ringtrain bench data', () => {
  it('packs each size, trains 2 workers on each in turn, and prints RSS and samples/s side by side with ratios', async () => {
    const dir = tempDir('ringtrain-bench-data-');
    const json = path.join(dir, 'rows.json');
    const result = await runCli([
      'bench',
      'data',
      '--sizes',
      '128KiB,1MiB,100000GiB',
      '--steps',
      '4',
      '--warmup-steps',
      '1',
      '--batch-size',
      '32',
      '--feature-size',
      '64',
      '--rounds',
      '2',
      '--dir',
      dir,
      '--json',
      json,
    ]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^# skipped 100000(\.0)? GiB: .* free, the pack needs .* \(pick --dir elsewhere\)$/m);
    expect(result.stdout).toMatch(
      /^# [\d.]+ KiB vs [\d.]+ KiB: peak RSS x\d+\.\d+ \/ x\d+\.\d+ per rank \(target within 10%: /m,
    );
    expect(result.stdout).toMatch(/^# [\d.]+ KiB vs [\d.]+ KiB: samples\/s x\d+\.\d+ \(target within 10%: /m);
    const rows = JSON.parse(readFileSync(json, 'utf8')) as DataRow[];
    expect(rows.map((r) => r.samples)).toEqual([Math.floor(131072 / 260), Math.floor(1048576 / 260)]);
    for (const row of rows) {
      expect(row.verified).toBe(true);
      expect(row.steps).toBeGreaterThanOrEqual(4);
      expect(row.datasetBytes).toBe(row.samples * 260);
      expect(row.peakRssBytes).toHaveLength(2);
      for (const rss of row.peakRssBytes) expect(rss).toBeGreaterThan(10 * 1024 * 1024);
      expect(row.samplesPerSecond).toBeGreaterThan(0);
    }
  });
});
