// `ringtrain bench data`: a worker's memory must not grow with the dataset. For each size (about
// 100 MB and 4 GB by default) a synthetic set is packed straight to disk (synthetic-source.ts,
// streamed: never in memory), then the same model trains on it with N local workers for a fixed
// number of steps; each worker's peak RSS and the samples/s are printed side by side, with the
// largest size's ratios to the smallest. Targets (RSS and samples/s within 10%) are printed,
// never asserted. A size the disk has no room for is skipped with a line saying so.
import { statfsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { runCoordinator } from '../coordinator/coordinator.js';
import { ProgressReporter, QuietProgressView } from '../coordinator/run/progress-reporter.js';
import { readMetrics } from '../coordinator/run/run-directory.js';
import { packDataSource } from '../shared/data/packed-writer.js';
import { PreemptedError } from '../shared/errors.js';
import { resolveJob } from '../shared/job.js';
import type { Job } from '../shared/job-schema.js';
import { fixed, formatTable, type Column } from './bench-table.js';
import { withoutInterruptions } from './bench-job.js';
import { ChildRssMonitor } from './rss-monitor.js';
import { stepFigures } from './step-timings.js';
import { SYNTHETIC_CLASSES, syntheticSource } from './synthetic-source.js';
import { formatBytes, median } from './units.js';

export interface DataBenchOptions {
  /** Packed dataset sizes in bytes. @default [100 MiB, 4 GiB] */
  sizes: number[];
  workers: number;
  steps: number;
  warmupSteps: number;
  /** Features per sample (float32). @default 256 */
  featureSize: number;
  batchSize: number;
  /** Where the packed folders are written (all sizes at once; removed at the end). @default os.tmpdir() */
  dir: string;
  /** Training runs per size, taken in turn (A B A B ...); figures are medians. @default 3 */
  rounds: number;
  backend: string;
  json?: string;
  write: (line: string) => void;
}

export interface DataRow {
  datasetBytes: number;
  samples: number;
  shards: number;
  packSeconds: number;
  samplesPerSecond: number;
  steps: number;
  peakRssBytes: number[];
  verified: boolean;
}

export async function runDataBench(options: DataBenchOptions): Promise<DataRow[]> {
  options.write(
    `# bench data: ${options.workers} workers, ${options.steps} measured steps (+${options.warmupSteps} warm-up) of batch ${options.batchSize}, ` +
      `${options.featureSize} float32 features per sample, ${options.backend} backend, ${options.rounds} rounds, packed under ${options.dir}`,
  );
  const dir = await mkdtemp(path.join(options.dir, 'ringtrain-bench-data-'));
  try {
    const packs = packSizes(dir, options);
    // Rounds visit every size in turn, so a machine that gets busier or quieter during the
    // bench weighs on every size alike; each size's figure is its median over the rounds.
    const runs = new Map<PackedSize, Array<Awaited<ReturnType<typeof trainSteps>>>>();
    for (let round = 0; round < options.rounds; round++)
      for (const pack of packs) {
        const trained = await trainSteps(pack.job, path.join(dir, `run-${round}-${pack.samples}`), options);
        runs.set(pack, [...(runs.get(pack) ?? []), trained]);
      }
    const rows = packs.map((pack): DataRow => {
      const own = runs.get(pack) ?? [];
      return {
        datasetBytes: pack.bytes,
        samples: pack.samples,
        shards: pack.shards,
        packSeconds: pack.packSeconds,
        samplesPerSecond: median(own.map((r) => r.samplesPerSecond)),
        steps: Math.min(...own.map((r) => r.steps)),
        peakRssBytes: Array.from({ length: options.workers }, (_, rank) =>
          Math.max(...own.map((r) => r.peakRssBytes[rank] ?? Number.NaN)),
        ),
        verified: own.length === options.rounds && own.every((r) => r.verified),
      };
    });
    options.write(formatTable(COLUMNS, rows));
    for (const line of ratioLines(rows)) options.write(line);
    if (options.json !== undefined) await writeFile(options.json, `${JSON.stringify(rows, null, 2)}\n`);
    return rows;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

interface PackedSize {
  samples: number;
  bytes: number;
  shards: number;
  packSeconds: number;
  job: Job;
}

/** Packs every size that fits on the disk (all are kept until the rounds are done). */
function packSizes(dir: string, options: DataBenchOptions): PackedSize[] {
  const recordBytes = (options.featureSize + 1) * 4;
  const packs: PackedSize[] = [];
  for (const size of options.sizes) {
    const samples = Math.max(options.batchSize, Math.floor(size / recordBytes));
    const free = freeBytes(options.dir);
    if (free !== undefined && free < samples * recordBytes * 1.05 + 256 * 1024 * 1024) {
      options.write(
        `# skipped ${formatBytes(size)}: ${options.dir} has ${formatBytes(free)} free, the pack needs ${formatBytes(samples * recordBytes)} and a margin (pick --dir elsewhere)`,
      );
      continue;
    }
    const packed = path.join(dir, `packed-${samples}`);
    // Enough epochs for warm-up + measured steps even on a small set (a big one needs one).
    const epochs = Math.ceil(((options.warmupSteps + options.steps + 1) * options.batchSize) / samples);
    const job = benchJob(packed, epochs, options);
    const packStart = performance.now();
    const { manifest, bytes } = packDataSource(syntheticSource(samples, options.featureSize), job, packed);
    const packSeconds = (performance.now() - packStart) / 1000;
    const shards = Object.values(manifest.splits).reduce((n, s) => n + s.shards.length, 0);
    packs.push({ samples, bytes, shards, packSeconds, job });
  }
  return packs;
}

/** Trains until warm-up + measured steps are done, then stops at that boundary (no final evaluation of millions of samples). */
async function trainSteps(
  job: Job,
  outDir: string,
  options: DataBenchOptions,
): Promise<Pick<DataRow, 'samplesPerSecond' | 'steps' | 'peakRssBytes' | 'verified'>> {
  const total = options.warmupSteps + options.steps;
  const stop = new AbortController();
  // The stop below is this bench's own: its "stopped, checkpointed" warning is noise here.
  process.env['RINGTRAIN_LOG_LEVEL'] ??= 'error';
  const monitor = new ChildRssMonitor();
  monitor.start();
  let peaks = new Map<number, number>();
  try {
    await runCoordinator({
      job: withoutInterruptions(job, options.workers),
      jobSource: 'bench data',
      host: '127.0.0.1',
      port: 0,
      localWorkers: options.workers,
      gpus: [],
      outDir,
      signal: stop.signal,
      onStepEvery: 1,
      callbacks: [{ onStep: (event) => void (event.step >= total && stop.abort()) }],
      reporter: new ProgressReporter(new QuietProgressView(() => undefined)),
    });
  } catch (error) {
    // The stop this bench asked for, at its step boundary.
    if (!(error instanceof PreemptedError)) throw error;
  } finally {
    peaks = monitor.stop();
  }
  const figures = stepFigures(readMetrics(path.join(outDir, 'metrics.jsonl')), options.warmupSteps, options.workers);
  return {
    samplesPerSecond: figures.samplesPerSecond,
    steps: figures.steps,
    peakRssBytes: Array.from({ length: options.workers }, (_, rank) => peaks.get(rank) ?? Number.NaN),
    verified: figures.complete && figures.steps >= options.steps,
  };
}

/** The same model and settings for every size; only the packed folder differs. */
function benchJob(packed: string, epochs: number, options: DataBenchOptions): Job {
  return resolveJob(
    {
      name: 'bench-data',
      seed: 1,
      data: { format: 'packed', path: packed },
      model: {
        input: [options.featureSize],
        layers: [
          { type: 'dense', units: 64, activation: 'relu' },
          { type: 'dense', units: SYNTHETIC_CLASSES, activation: 'softmax' },
        ],
      },
      loss: 'sparseCategoricalCrossentropy',
      optimizer: { type: 'sgd', learningRate: 0.05 },
      training: { epochs, batchSize: options.batchSize },
      backend: options.backend,
      workers: options.workers,
    },
    'bench data',
  );
}

function freeBytes(dir: string): number | undefined {
  try {
    const stats = statfsSync(dir);
    return stats.bavail * stats.bsize;
  } catch {
    return undefined;
  }
}

const COLUMNS: ReadonlyArray<Column<DataRow>> = [
  { title: 'dataset', width: 10, value: (r) => formatBytes(r.datasetBytes) },
  { title: 'samples', width: 10, value: (r) => String(r.samples) },
  { title: 'shards', width: 6, value: (r) => String(r.shards) },
  { title: 'pack_s', width: 7, value: (r) => fixed(r.packSeconds, 1) },
  { title: 'steps', width: 5, value: (r) => String(r.steps) },
  { title: 'samples/s', width: 10, value: (r) => fixed(r.samplesPerSecond, 0) },
  {
    title: 'peak_rss_per_worker',
    width: 24,
    value: (r) => r.peakRssBytes.map((b) => (Number.isFinite(b) ? formatBytes(b) : '-')).join(' / '),
  },
  { title: 'verified', width: 8, value: (r) => (r.verified ? 'yes' : 'NO') },
];

/** Largest size vs smallest: each rank's peak RSS and samples/s as ratios, with the targets. */
function ratioLines(rows: readonly DataRow[]): string[] {
  const small = rows[0];
  const large = rows.at(-1);
  if (small === undefined || large === undefined || rows.length < 2)
    return ['# fewer than two sizes measured: no ratios'];
  const rss = large.peakRssBytes.map((b, rank) => b / (small.peakRssBytes[rank] ?? Number.NaN));
  const speed = large.samplesPerSecond / small.samplesPerSecond;
  const within = (ratio: number): string => (Math.abs(ratio - 1) <= 0.1 ? 'within 10%' : 'OUTSIDE 10%');
  return [
    `# ${formatBytes(large.datasetBytes)} vs ${formatBytes(small.datasetBytes)}: peak RSS x${rss.map((r) => fixed(r, 3)).join(' / x')} per rank (target within 10%: ${rss.map(within).join(' / ')})`,
    `# ${formatBytes(large.datasetBytes)} vs ${formatBytes(small.datasetBytes)}: samples/s x${fixed(speed, 3)} (target within 10%: ${within(speed)})`,
  ];
}
