// `ringtrain bench train`: the real trainer (coordinator in this process, N local worker
// processes) at each requested world size, against baselines measured in the same run: the bare
// gradient loop at each world size (the compute ceiling, bare-gradient.ts), plain single-process
// `model.fit` on the same model, data and backend, the resident memory of a worker-like process
// with no model, and with --peer pytorch PyTorch DDP on the same job (pytorch-peer.ts). Step figures come from the run's metrics.jsonl; peak
// RSS per worker from /proc. Targets are printed, never asserted.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { runCoordinator } from '../coordinator/coordinator.js';
import { ProgressReporter, QuietProgressView } from '../coordinator/run/progress-reporter.js';
import { readMetrics } from '../coordinator/run/run-directory.js';
import { loadDataset } from '../shared/data/dataset.js';
import { JobConfigError } from '../shared/errors.js';
import type { Job } from '../shared/job-schema.js';
import { batchesPerEpoch } from '../shared/shard-plan.js';
import { selectBackend } from '../worker/backend/backend.js';
import { buildModel } from '../worker/replica/model-builder.js';
import type { WireCodec } from '../worker/collectives/wire-compression.js';
import { BenchChild } from './bench-child.js';
import { loadBenchJob, withoutInterruptions } from './bench-job.js';
import { measureModelFit, type FitBaseline } from './fit-baseline.js';
import { ChildRssMonitor } from './rss-monitor.js';
import { stepFigures, type RankSplit } from './step-timings.js';
import { printTrainReport } from './train-report.js';
import { measureBareCeiling, type BareCeiling } from './bare-gradient.js';
import { findTorchPython, peerUnsupported, runPytorchPeer } from './pytorch-peer.js';

export interface TrainBenchOptions {
  jobFile: string | undefined;
  workers: number[];
  steps: number;
  warmupSteps: number;
  backend?: string;
  compression?: WireCodec;
  /** Measure the model.fit baseline. */
  baseline: boolean;
  /** Measure the bare gradient loop at each world size (the compute ceiling, bare-gradient.ts). @default true */
  ceiling?: boolean;
  /** Also run a peer trainer on the same job, data and batch (pytorch-peer.ts). */
  peer?: 'pytorch';
  json?: string;
  write: (line: string) => void;
}

/**
 * One `--json` row: a ringtrain run at one world size, the model.fit baseline (stock kernels), or
 * on wasm model.fit with ringtrain's wasm kernels ('fit+kernels', for reference).
 */
export interface TrainRow {
  kind: 'ringtrain' | 'model.fit' | 'fit+kernels' | 'bare-grad' | 'bare-grad+write' | 'pytorch-ddp';
  workers: number;
  samplesPerSecond: number;
  /** samples/s ÷ ringtrain N = 1 samples/s (NaN without an N = 1 run). */
  speedup: number;
  /** ringtrain rows: samples/s ÷ the bare gradient loop's at the same world size (NaN without it). */
  ofCeiling: number;
  /** ringtrain rows: samples/s ÷ the bare loop's that also writes the weights each step ('bare-grad+write'). */
  ofWriteCeiling?: number;
  /** Peer rows: intra-op threads per rank. */
  threads?: number;
  /** speedup ÷ N. */
  efficiency: number;
  meanStepMs: number;
  steps: number;
  /** Peak resident bytes of each rank's process (empty where /proc is unavailable). */
  peakRssBytes: number[];
  ranks: RankSplit[];
  nonComputeFraction: number;
  finalLoss: number;
  testMetrics: Record<string, number>;
  /** The run finished every step with reports from every rank, finite losses and agreeing parameter hashes. */
  verified: boolean;
  backend: string;
  compression: string;
}

export interface TrainBenchContext {
  job: Job;
  paramCount: number;
  runtimeRssBytes: number;
  rows: TrainRow[];
}

export async function runTrainBench(options: TrainBenchOptions): Promise<TrainRow[]> {
  const job = loadBenchJob(options.jobFile, options);
  checkStepsFit(job, options);
  const runtimeRssBytes = await measureRuntimeRss(options);
  const rows: TrainRow[] = [];
  if (options.baseline) {
    const fit = await measureModelFit(job, options.steps, options.warmupSteps);
    rows.push(fitRow('model.fit', fit));
    if (fit.backend === 'wasm')
      rows.push(fitRow('fit+kernels', await measureModelFit(job, options.steps, options.warmupSteps, true)));
  }
  if (options.ceiling !== false) {
    for (const workers of options.workers) {
      for (const writeParams of [false, true]) {
        const ceiling = await measureBareCeiling(
          options.jobFile,
          options.backend,
          job,
          workers,
          options.steps,
          options.warmupSteps,
          writeParams,
        );
        rows.push(bareRow(ceiling, options.steps));
      }
    }
  }
  for (const workers of options.workers) rows.push(await runRing(job, workers, options));
  if (options.peer === 'pytorch') rows.push(...(await peerRows(job, options)));
  const single = rows.find((r) => r.kind === 'ringtrain' && r.workers === 1)?.samplesPerSecond ?? Number.NaN;
  for (const row of rows) {
    row.speedup = row.samplesPerSecond / single;
    row.efficiency = row.speedup / row.workers;
    const ceiling = rows.find((r) => r.kind === 'bare-grad' && r.workers === row.workers);
    if (row.kind === 'ringtrain' && ceiling !== undefined)
      row.ofCeiling = row.samplesPerSecond / ceiling.samplesPerSecond;
    const writeCeiling = rows.find((r) => r.kind === 'bare-grad+write' && r.workers === row.workers);
    if (row.kind === 'ringtrain' && writeCeiling !== undefined)
      row.ofWriteCeiling = row.samplesPerSecond / writeCeiling.samplesPerSecond;
  }
  printTrainReport({ job, paramCount: await trainableParams(job), runtimeRssBytes, rows }, options);
  if (options.json !== undefined) await writeFile(options.json, `${JSON.stringify(rows, null, 2)}\n`);
  return rows;
}

/** One embedded run: coordinator here, `workers` local processes, warm-up + measured steps. */
async function runRing(job: Job, workers: number, options: TrainBenchOptions): Promise<TrainRow> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ringtrain-bench-'));
  const monitor = new ChildRssMonitor();
  monitor.start();
  try {
    const totalSteps = options.warmupSteps + options.steps;
    const summary = await runCoordinator({
      job: withoutInterruptions(job, workers),
      jobSource: options.jobFile ?? 'default job',
      host: '127.0.0.1',
      port: 0,
      localWorkers: workers,
      gpus: [],
      outDir: path.join(dir, 'run'),
      stopAtStep: totalSteps,
      reporter: new ProgressReporter(new QuietProgressView(() => undefined)),
    });
    const peaks = monitor.stop();
    const figures = stepFigures(readMetrics(path.join(summary.runDir, 'metrics.jsonl')), options.warmupSteps, workers);
    return {
      kind: 'ringtrain',
      workers,
      samplesPerSecond: figures.samplesPerSecond,
      speedup: Number.NaN,
      ofCeiling: Number.NaN,
      efficiency: Number.NaN,
      meanStepMs: figures.meanStepMs,
      steps: figures.steps,
      peakRssBytes: Array.from({ length: workers }, (_, rank) => peaks.get(rank) ?? Number.NaN),
      ranks: figures.ranks,
      nonComputeFraction: figures.nonComputeFraction,
      finalLoss: figures.finalLoss,
      testMetrics: summary.test,
      verified: figures.complete && figures.steps === options.steps && summary.steps === totalSteps,
      backend: String((summary['workers'] as Array<{ backend?: string }> | undefined)?.[0]?.backend ?? job.backend),
      compression: job.allreduce.compression,
    };
  } finally {
    monitor.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** The peer at every world size, or none (with a line saying why) where it cannot run. */
async function peerRows(job: Job, options: TrainBenchOptions): Promise<TrainRow[]> {
  const unsupported = peerUnsupported(job);
  const python = unsupported === undefined ? await findTorchPython() : undefined;
  if (unsupported !== undefined || python === undefined) {
    options.write(
      `# PyTorch peer skipped: ${unsupported ?? 'no Python with torch and gloo (apt-get install python3-torch, or set RINGTRAIN_PYTHON)'}`,
    );
    return [];
  }
  const rows: TrainRow[] = [];
  for (const workers of options.workers) {
    const peer = await runPytorchPeer(python, job, workers, options.steps, options.warmupSteps);
    rows.push({
      ...emptyRow('pytorch-ddp', workers, `torch ${peer.version}, gloo`),
      samplesPerSecond: peer.samplesPerSecond,
      meanStepMs: peer.meanStepMs,
      steps: options.steps,
      finalLoss: peer.finalLoss,
      threads: peer.threads,
      verified: Number.isFinite(peer.finalLoss) && Number.isFinite(peer.samplesPerSecond),
    });
  }
  return rows;
}

function bareRow(ceiling: BareCeiling, steps: number): TrainRow {
  return {
    ...emptyRow(ceiling.writeParams ? 'bare-grad+write' : 'bare-grad', ceiling.workers, '-'),
    samplesPerSecond: ceiling.samplesPerSecond,
    meanStepMs: ceiling.meanStepMs,
    steps,
    verified: Number.isFinite(ceiling.samplesPerSecond),
  };
}

function emptyRow(kind: TrainRow['kind'], workers: number, backend: string): TrainRow {
  return {
    kind,
    workers,
    samplesPerSecond: Number.NaN,
    speedup: Number.NaN,
    ofCeiling: Number.NaN,
    efficiency: Number.NaN,
    meanStepMs: Number.NaN,
    steps: 0,
    peakRssBytes: [],
    ranks: [],
    nonComputeFraction: Number.NaN,
    finalLoss: Number.NaN,
    testMetrics: {},
    verified: false,
    backend,
    compression: '-',
  };
}

function fitRow(kind: 'model.fit' | 'fit+kernels', fit: FitBaseline): TrainRow {
  return {
    kind,
    workers: 1,
    samplesPerSecond: fit.samplesPerSecond,
    speedup: Number.NaN,
    ofCeiling: Number.NaN,
    efficiency: Number.NaN,
    meanStepMs: fit.meanStepMs,
    steps: fit.steps,
    peakRssBytes: [],
    ranks: [],
    nonComputeFraction: Number.NaN,
    finalLoss: fit.finalLoss,
    testMetrics: {},
    verified: Number.isFinite(fit.finalLoss) && Number.isFinite(fit.samplesPerSecond),
    backend: fit.backend,
    compression: '-',
  };
}

/** Every run must be able to take warm-up + measured steps, or its figures would cover fewer. */
function checkStepsFit(job: Job, options: TrainBenchOptions): void {
  const perEpoch = batchesPerEpoch(loadDataset(job).train.count, job.training.batchSize);
  const available = Math.min(perEpoch * job.training.epochs, job.training.maxSteps ?? Number.POSITIVE_INFINITY);
  const wanted = options.warmupSteps + options.steps;
  if (wanted > available) {
    throw new JobConfigError(options.jobFile ?? 'default job', [
      `--warmup-steps ${options.warmupSteps} + --steps ${options.steps} = ${wanted} steps, but the job has ${available} (${job.training.epochs} epochs of ${perEpoch} batches${job.training.maxSteps === undefined ? '' : `, training.maxSteps ${job.training.maxSteps}`}); lower --steps or raise training.epochs`,
    ]);
  }
}

/** Counted on a model built under the job's backend (selecting it also silences tfjs's banners). */
async function trainableParams(job: Job): Promise<number> {
  await selectBackend(job.backend);
  const model = buildModel(job);
  const count = model.trainableWeights.reduce(
    (sum, weight) => sum + weight.shape.reduce<number>((a, b) => a * (b ?? 1), 1),
    0,
  );
  model.dispose();
  return count;
}

/** Peak RSS of a worker-like process without a model (see rss-probe.ts). */
async function measureRuntimeRss(options: TrainBenchOptions): Promise<number> {
  const args = [
    'bench',
    'rss-probe',
    ...(options.jobFile !== undefined ? [options.jobFile] : []),
    ...(options.backend !== undefined ? ['--backend', options.backend] : []),
  ];
  const probe = BenchChild.spawn('rss probe', args);
  try {
    return Number((await probe.next('rss', 120_000))['maxRssBytes']);
  } finally {
    probe.kill();
  }
}
