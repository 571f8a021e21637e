// Trains the penguins classifier and the cars regression (test/helpers/vega-tables.ts) through
// the real CLI with the default `normalize: true`, and gives back what the tests compare against:
// the run folder, summary.json's test figures, and the raw rows of the run's own test split
// (reproduced with the run's split function and seed).
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { splitIndices } from '../../shared/data/split.js';
import { runCli, writeJob } from './cli.js';
import { CAR_FEATURES, cars, PENGUIN_FEATURES, penguins, toCsv } from './vega-tables.js';

export const SPLIT = { validation: 0.1, test: 0.2 };
export const SEED = 5;

export interface TrainedTable {
  runDir: string;
  /** The training CSV. */
  csv: string;
  features: string[];
  label: string;
  test: Record<string, number>;
  /** Raw test-split rows: features row-major, labels as written in the CSV. */
  testX: number[][];
  testLabels: Array<string | number>;
  /** The test split as a CSV file (header + raw rows), for predict/evaluate. */
  testCsv: string;
}

type Kind = 'classifier' | 'regression';

function jobFor(kind: Kind, csv: string, epochs: number): Record<string, unknown> {
  const classifier = kind === 'classifier';
  return {
    name: classifier ? 'penguins' : 'cars',
    seed: SEED,
    data: {
      format: 'csv',
      path: csv,
      label: classifier ? 'Species' : 'Miles_per_Gallon',
      task: classifier ? 'classification' : 'regression',
      split: SPLIT,
    },
    model: {
      input: [classifier ? PENGUIN_FEATURES.length : CAR_FEATURES.length],
      layers: [
        { type: 'dense', units: 16, activation: 'relu' },
        classifier ? { type: 'dense', units: 3, activation: 'softmax' } : { type: 'dense', units: 1 },
      ],
    },
    loss: classifier ? 'categoricalCrossentropy' : 'meanSquaredError',
    metrics: classifier ? ['accuracy'] : ['mse', 'mae'],
    optimizer: { type: 'adam', learningRate: 0.01 },
    training: { epochs, batchSize: 32 },
    workers: 2,
    backend: 'cpu',
    checkpoint: { everySteps: 0, keep: 1 },
  };
}

/** Trains `kind` in `dir` (a temp folder the caller owns); throws with the CLI's output if it fails. */
export async function trainTable(kind: Kind, dir: string, epochs = 15): Promise<TrainedTable> {
  const table = kind === 'classifier' ? penguins() : cars();
  const features = kind === 'classifier' ? PENGUIN_FEATURES : CAR_FEATURES;
  const label = kind === 'classifier' ? 'Species' : 'Miles_per_Gallon';
  const csv = path.join(dir, `${kind}.csv`);
  writeFileSync(csv, toCsv(table));
  const runDir = path.join(dir, `${kind}-run`);
  const result = await runCli(['train', writeJob(dir, jobFor(kind, csv, epochs), `${kind}.yaml`), '--out', runDir]);
  if (result.code !== 0) throw new Error(`training ${kind} failed (${result.code}):\n${result.stderr}`);
  const summary = JSON.parse(readFileSync(path.join(runDir, 'summary.json'), 'utf8')) as {
    test: Record<string, number>;
  };
  const rows = Array.from(splitIndices(table.rows.length, SPLIT, SEED).test, (i) => table.rows[i] ?? []);
  const at = features.map((c) => table.header.indexOf(c));
  const labelAt = table.header.indexOf(label);
  const testCsv = path.join(dir, `${kind}-test.csv`);
  writeFileSync(testCsv, toCsv({ header: table.header, rows }));
  return {
    runDir,
    csv,
    features,
    label,
    test: summary.test,
    testX: rows.map((row) => at.map((i) => Number(row[i]))),
    testLabels: rows.map((row) => row[labelAt] as string | number),
    testCsv,
  };
}

/** Coefficient of determination of `predicted` against `actual`. */
export function rSquared(actual: number[], predicted: number[]): number {
  const mean = actual.reduce((a, b) => a + b, 0) / actual.length;
  const total = actual.reduce((s, y) => s + (y - mean) ** 2, 0);
  const residual = actual.reduce((s, y, i) => s + (y - (predicted[i] as number)) ** 2, 0);
  return 1 - residual / total;
}

/** The run's own test R², from summary.json's test.mse (label units) and the test labels' variance. */
export function runRSquared(trained: TrainedTable): number {
  const ys = trained.testLabels.map(Number);
  const mean = ys.reduce((a, b) => a + b, 0) / ys.length;
  const variance = ys.reduce((s, y) => s + (y - mean) ** 2, 0) / ys.length;
  return 1 - (trained.test['mse'] as number) / variance;
}
