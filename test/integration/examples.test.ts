// Every example in examples/ through the real CLI on 2 worker processes (default backend: wasm
// here), shrunk to a small size (fewer digits, rows or epochs) but with its model, loss and
// optimizer exactly as shipped, and held to a quality bar.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { readMetrics } from '../../coordinator/run/run-directory.js';
import { REPO_ROOT, RUN_LIMIT_MS, runCli, runNode, tempDir, writeJob } from '../helpers/cli.js';

const EXAMPLES = path.join(REPO_ROOT, 'examples');
/** xor-compare.mjs trains 4 times (the 2-layer net once, the perceptron with 3 seeds), each bounded like one runCli. */
const XOR_RUNS = 4;

interface Summary {
  worldSize: number;
  steps: number;
  train: Record<string, number>;
  test: Record<string, number>;
  validation: Record<string, number>;
}

interface Run {
  summary: Summary;
  stepLosses: number[];
}

type JobObject = Record<string, unknown> & { data: Record<string, unknown>; training: Record<string, unknown> };

function readExample(name: string): JobObject {
  return parse(readFileSync(path.join(EXAMPLES, name), 'utf8')) as JobObject;
}

/** Trains a (shrunk) example job with 2 workers and returns its summary and per-step losses. */
async function train(job: JobObject, dir = tempDir('ringtrain-example-')): Promise<Run> {
  const file = writeJob(dir, job);
  const out = path.join(dir, 'run');
  const result = await runCli(['train', file, '--workers', '2', '--out', out]);
  expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);
  const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8')) as Summary;
  expect(summary.worldSize).toBe(2);
  const stepLosses = readMetrics(path.join(out, 'metrics.jsonl'))
    .filter((r) => r['type'] === 'step')
    .map((r) => Number(r['loss']));
  return { summary, stepLosses };
}

/** Runs examples/make-data.mjs into `dir`; returns the regression labels' variance (population). */
function makeData(dir: string, rows: number): number {
  const result = spawnSync(process.execPath, [path.join(EXAMPLES, 'make-data.mjs'), dir, '--rows', String(rows)], {
    encoding: 'utf8',
  });
  expect(result.status, result.stderr).toBe(0);
  const labels = readFileSync(path.join(dir, 'regression.csv'), 'utf8')
    .trim()
    .split('\n')
    .slice(1)
    .map((line) => Number(line.split(',').at(-1)));
  expect(labels).toHaveLength(rows);
  const mean = labels.reduce((a, b) => a + b, 0) / rows;
  return labels.reduce((a, y) => a + (y - mean) ** 2, 0) / rows;
}

describe('examples (2 workers, real processes)', () => {
  it(
    'XOR: the 2-layer net gets 4 of 4 corners, the perceptron at most 3 (xor-compare.mjs)',
    async () => {
      // 100 of the shipped 300 epochs: xor.yaml has all four corners by epoch 60, and the perceptron's
      // bound holds at any length. Four CLI runs, each a coordinator and 2 workers.
      const result = await runNode([path.join(EXAMPLES, 'xor-compare.mjs'), '--epochs', '100'], {
        timeoutMs: XOR_RUNS * RUN_LIMIT_MS,
      });
      expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);
      expect(result.stdout).toMatch(/2-layer network \(xor\.yaml\): +4 of 4 corners/);
      const perceptron = /perceptron \(xor-perceptron\.yaml\): +(\d) of 4/.exec(result.stdout);
      expect(Number(perceptron?.[1])).toBeLessThanOrEqual(3);
      expect(result.stdout).toMatch(/any line, by brute force: +3 of 4 corners at most/);
    },
    XOR_RUNS * RUN_LIMIT_MS + 60_000,
  );

  it('regression on a generated CSV reaches R² ≥ 0.9, with mse/mae in label units', async () => {
    const dir = tempDir('ringtrain-example-');
    const labelVariance = makeData(dir, 800);
    const job = readExample('regression.yaml');
    job.data['path'] = path.join(dir, 'regression.csv');
    job.training['epochs'] = 8;
    const { summary } = await train(job, dir);
    const r2 = 1 - (summary.test['mse'] ?? Number.NaN) / labelVariance;
    expect(r2).toBeGreaterThanOrEqual(0.9);
    // Units: the labels were standardised for training, so the loss is in std units² and mse in y units².
    expect(summary.test['mse']).toBeCloseTo((summary.test['loss'] ?? 0) * labelVariance, 0);
    expect(summary.test['mae']).toBeGreaterThan(0);
  });

  it('binary classification (sigmoid + binaryCrossentropy) separates the two moons', async () => {
    const dir = tempDir('ringtrain-example-');
    makeData(dir, 800);
    const job = readExample('binary-moons.yaml');
    job.data['path'] = path.join(dir, 'moons.csv');
    job.training['epochs'] = 10;
    const { summary } = await train(job, dir);
    expect(summary.test['binaryAccuracy']).toBeGreaterThanOrEqual(0.9);
  });

  it('MNIST MLP reaches test accuracy ≥ 0.85 on 3,000 digits', async () => {
    const job = readExample('mnist-mlp.yaml');
    job.data['limit'] = 3000;
    job.training['epochs'] = 3;
    const { summary } = await train(job);
    expect(summary.test['accuracy']).toBeGreaterThanOrEqual(0.85);
  });

  it('MNIST CNN trains on wasm: test accuracy ≥ 0.8 after 2 epochs of 1,200 digits', async () => {
    const job = readExample('mnist-cnn.yaml');
    job.data['limit'] = 1500;
    job.training['epochs'] = 2;
    job.training['batchSize'] = 32;
    const { summary } = await train(job);
    expect(summary.test['accuracy']).toBeGreaterThanOrEqual(0.8);
  });

  it('autoencoder: reconstruction MSE falls at least 5× from the first step', async () => {
    const job = readExample('autoencoder.yaml');
    job.data['limit'] = 2000;
    job.training['epochs'] = 8;
    const { summary, stepLosses } = await train(job);
    const first = stepLosses[0] ?? Number.NaN;
    expect(summary.test['mse']).toBeLessThanOrEqual(first / 5);
  });

  it('the guide network (input BatchNorm, ReLU + dropout 0.5, softmax) trains', async () => {
    const job = readExample('guide-network.yaml');
    job.data['limit'] = 2000;
    job.training['epochs'] = 3;
    const { summary, stepLosses } = await train(job);
    expect(summary.test['accuracy']).toBeGreaterThanOrEqual(0.75);
    expect(summary.train['loss']).toBeLessThan((stepLosses[0] ?? 0) / 2);
  });
});

/** Runs examples/make-sequence-data.mjs into `dir` at a small size (Moby Dick: 3 chapters, context 32). */
function makeSequenceData(dir: string): void {
  const args = ['--chapters', '3', '--context', String(MOBY_CONTEXT), '--stride', '8'];
  const result = spawnSync(process.execPath, [path.join(EXAMPLES, 'make-sequence-data.mjs'), dir, ...args], {
    encoding: 'utf8',
  });
  expect(result.status, result.stderr).toBe(0);
}

const MOBY_CONTEXT = 32;

/** The figures a script prints as `<name> <number>` lines (evaluate.mjs, sample.mjs). */
function figure(stdout: string, name: string): number {
  const match = new RegExp(`^${name}\\s+(-?[\\d.]+)`, 'm').exec(stdout);
  expect(match, `no "${name}" line in:\n${stdout}`).not.toBeNull();
  return Number(match?.[1]);
}

/** co2-lstm.yaml trained on `dir`'s co2-early.csv for `epochs`; returns the run and its folder. */
async function trainCo2(dir: string, epochs: number): Promise<Run & { out: string }> {
  const job = readExample('co2-lstm/co2-lstm.yaml');
  job.data['path'] = path.join(dir, 'co2-early.csv');
  job.training['epochs'] = epochs;
  const runDir = tempDir('ringtrain-example-');
  return { ...(await train(job, runDir)), out: path.join(runDir, 'run') };
}

describe('sequence examples on real data (2 workers, real processes)', () => {
  it('co2 LSTM (YAML lstm layer) forecasts 1990-2020 with under half the naive MSE, trained on 1958-1989', async () => {
    const dir = tempDir('ringtrain-example-');
    makeSequenceData(dir);
    const { out } = await trainCo2(dir, 15);
    const result = await runNode([path.join(EXAMPLES, 'co2-lstm/evaluate.mjs'), out, path.join(dir, 'co2-late.csv')]);
    expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);
    // Years the model never saw: a change of 0 (the last value) misses the seasonal cycle.
    expect(figure(result.stdout, 'model MSE')).toBeLessThan(figure(result.stdout, 'naive MSE') / 2);
    expect(figure(result.stdout, 'ratio')).toBeLessThan(0.5);
  });

  it('fine-tuning: model.from a co2-lstm run starts on 1990-2020 where a fresh LSTM is only after training', async () => {
    const dir = tempDir('ringtrain-example-');
    makeSequenceData(dir);
    const first = await trainCo2(dir, 10);
    const finetune = readExample('co2-lstm/co2-finetune.yaml');
    finetune.data['path'] = path.join(dir, 'co2-late.csv');
    finetune['model'] = { input: [24, 1], from: path.join(first.out, 'model', 'model.json') };
    finetune.training['epochs'] = 3;
    const tuned = await train(finetune);
    // The same job from a fresh LSTM (co2-lstm.yaml's layers, seeded): same data, same first batch.
    const fresh = readExample('co2-lstm/co2-finetune.yaml');
    fresh.data['path'] = path.join(dir, 'co2-late.csv');
    fresh['model'] = readExample('co2-lstm/co2-lstm.yaml')['model'];
    fresh.training['epochs'] = 3;
    const scratch = await train(fresh);
    const tunedFirst = tuned.stepLosses[0] ?? Number.NaN;
    const freshFirst = scratch.stepLosses[0] ?? Number.NaN;
    expect(tunedFirst).toBeLessThan(freshFirst / 3);
    // ...and it starts at least as well as the fresh model ends after 3 epochs.
    expect(tunedFirst).toBeLessThan(scratch.summary.train['loss'] ?? Number.NaN);
    expect(tuned.summary.validation['mse']).toBeLessThan(scratch.summary.validation['mse'] ?? Number.NaN);
  });

  it('Transformer (model module, custom attention layer) beats the unigram baseline on held-out chapters', async () => {
    const dir = tempDir('ringtrain-example-');
    makeSequenceData(dir);
    const { baselines } = JSON.parse(readFileSync(path.join(dir, 'moby-vocab.json'), 'utf8')) as {
      baselines: { unigram: number; bigram: number };
    };
    const job = readExample('moby-transformer/moby-transformer.yaml');
    job.data['path'] = path.join(dir, 'moby-train.csv');
    job['model'] = { input: [MOBY_CONTEXT], module: path.join(EXAMPLES, 'moby-transformer/model.js') };
    job.training['batchSize'] = 32;
    job.training['maxSteps'] = 100;
    job['validation'] = { everySteps: 50 };
    const runDir = tempDir('ringtrain-example-');
    const { summary } = await train(job, runDir);
    expect(summary.validation['loss']).toBeLessThan(baselines.unigram);
    const sample = await runNode([
      path.join(EXAMPLES, 'moby-transformer/sample.mjs'),
      path.join(runDir, 'run'),
      dir,
      '--windows',
      '1000',
      '--chars',
      '80',
    ]);
    expect(sample.code, `${sample.stdout}\n${sample.stderr}`).toBe(0);
    // Chapters 133-135, never trained on.
    expect(figure(sample.stdout, 'model')).toBeLessThan(figure(sample.stdout, 'unigram'));
    expect(/^sample: (.*)$/m.exec(sample.stdout)?.[1]).toHaveLength(80);
  });
});
