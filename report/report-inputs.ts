// What `ringtrain report` reads: run directories (metrics.jsonl, job.yaml, summary.json when the
// run finished) and the JSON that `bench train --json` and `bench allreduce --json` write. Each
// input is classified here, once; anything else is a ReportInputError naming it.
import { existsSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { AllreduceRow } from '../bench/allreduce-rows.js';
import type { TrainRow } from '../bench/train-bench.js';
import { readMetrics } from '../coordinator/run/run-directory.js';
import { ReportInputError, RingtrainError } from '../shared/errors.js';

export interface RunInput {
  kind: 'run';
  /** The path as given (its base name labels the run in charts). */
  source: string;
  label: string;
  /** One point per step (the last record of a step that ran twice, after a resume); skipped steps left out. */
  train: Array<{ step: number; loss: number }>;
  validation: Array<{ step: number; metrics: Record<string, number> }>;
  job: Record<string, unknown>;
}

export interface TrainBenchInput {
  kind: 'bench-train';
  source: string;
  rows: TrainRow[];
}

export interface AllreduceBenchInput {
  kind: 'bench-allreduce';
  source: string;
  rows: AllreduceRow[];
}

export type ReportInput = RunInput | TrainBenchInput | AllreduceBenchInput;

export function readReportInput(source: string): ReportInput {
  if (!existsSync(source)) throw new ReportInputError(source, 'no such file or directory');
  if (statSync(source).isDirectory()) return readRun(source);
  return readBench(source);
}

function readRun(source: string): RunInput {
  const metricsFile = path.join(source, 'metrics.jsonl');
  if (!existsSync(path.join(source, 'job.yaml')))
    throw new ReportInputError(
      source,
      'not a run directory (no job.yaml); pass runs/<timestamp>-<name> or runs/latest',
    );
  const records = guarded(source, () => readMetrics(metricsFile));
  const steps = new Map<number, number>();
  for (const r of records)
    if (r['type'] === 'step' && r['skipped'] !== true && typeof r['loss'] === 'number')
      steps.set(Number(r['step']), r['loss']);
  const validations = new Map<number, Record<string, number>>();
  for (const r of records)
    if (r['type'] === 'validation') {
      const metrics: Record<string, number> = {};
      for (const [key, value] of Object.entries(r))
        if (key.startsWith('validation.') && typeof value === 'number') metrics[key.slice(11)] = value;
      validations.set(Number(r['step']), metrics);
    }
  if (steps.size === 0) throw new ReportInputError(source, 'the run has no steps in metrics.jsonl yet');
  const job = guarded(source, () => parseYaml(readFileSync(path.join(source, 'job.yaml'), 'utf8')) as unknown);
  return {
    kind: 'run',
    source,
    label: path.basename(path.resolve(source)),
    // metrics.jsonl's step s is the (s+1)-th step: plotted at s + 1 steps done, like validations.
    train: [...steps].sort(([a], [b]) => a - b).map(([step, loss]) => ({ step: step + 1, loss })),
    validation: [...validations].sort(([a], [b]) => a - b).map(([step, metrics]) => ({ step, metrics })),
    job: isObject(job) ? job : {},
  };
}

function readBench(source: string): TrainBenchInput | AllreduceBenchInput {
  const parsed = guarded(source, () => JSON.parse(readFileSync(source, 'utf8')) as unknown);
  const rows = Array.isArray(parsed) ? parsed.filter(isObject) : [];
  if (rows.length === 0 || rows.length !== (parsed as unknown[]).length)
    throw new ReportInputError(
      source,
      'not a run directory or a JSON array of bench rows (bench train/allreduce --json)',
    );
  if (rows.every((r) => typeof r['bytes'] === 'number' && typeof r['busbwGBps'] === 'number'))
    return { kind: 'bench-allreduce', source, rows: rows as unknown as AllreduceRow[] };
  if (rows.every((r) => typeof r['workers'] === 'number' && typeof r['kind'] === 'string'))
    return { kind: 'bench-train', source, rows: rows.map(trainRow) };
  throw new ReportInputError(source, 'its rows are neither `bench train --json` nor `bench allreduce --json` rows');
}

/** JSON writes NaN (no N = 1 run to compare with) as null; the charts want numbers or nothing. */
function trainRow(row: Record<string, unknown>): TrainRow {
  const number = (key: string): number => (typeof row[key] === 'number' ? row[key] : Number.NaN);
  return {
    ...(row as unknown as TrainRow),
    samplesPerSecond: number('samplesPerSecond'),
    speedup: number('speedup'),
    efficiency: number('efficiency'),
  };
}

/** Runs `read`; a failure to read or parse becomes one line naming the input. */
function guarded<T>(source: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    if (error instanceof ReportInputError) throw error;
    const reason = error instanceof RingtrainError || error instanceof Error ? error.message : String(error);
    throw new ReportInputError(source, `cannot read it: ${reason.split('\n')[0] ?? reason}`, { cause: error });
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
