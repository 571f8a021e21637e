// The central correctness test (ARCHITECTURE.md "What a step means"): the same job on 1, 2 and 3
// workers follows the same trajectory, up to float rounding. 32 samples over 3 ranks is an
// uneven 11/11/10 split.
import { readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readMetrics } from '../../coordinator/run/run-directory.js';
import { decodeTrainState, type TrainState } from '../../shared/train-state.js';
import { runCli, smallMnistJob, tempDir, writeJob } from '../helpers/cli.js';

const STEPS = 20;

interface RunOutcome {
  state: TrainState;
  losses: number[];
}

async function train(
  optimizer: Record<string, unknown>,
  workers: number,
  extra: Record<string, unknown> = {},
): Promise<RunOutcome> {
  const dir = tempDir('ringtrain-equiv-');
  const job = writeJob(
    dir,
    smallMnistJob({
      data: { format: 'mnist', limit: 1000 },
      optimizer,
      ...extra,
      training: { epochs: 1, batchSize: 32, maxSteps: STEPS },
      checkpoint: { everySteps: 0, keep: 1 },
      validation: { everySteps: 0 },
      consistencyCheckEverySteps: 5,
    }),
  );
  const out = path.join(dir, 'run');
  const result = await runCli(['train', job, '--workers', String(workers), '--out', out]);
  expect(result.stderr, result.stdout).toBe('');
  expect(result.code).toBe(0);
  const checkpoints = readdirSync(path.join(out, 'checkpoints'))
    .filter((n) => n.startsWith('step-'))
    .sort();
  const last = checkpoints.at(-1) ?? '';
  expect(last).toBe(`step-${String(STEPS).padStart(9, '0')}`);
  const state = decodeTrainState(readFileSync(path.join(out, 'checkpoints', last, 'state.bin')), last);
  const losses = readMetrics(path.join(out, 'metrics.jsonl'))
    .filter((r) => r['type'] === 'step')
    .map((r) => Number(r['loss']));
  return { state, losses };
}

function relativeDistance(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < a.length; i++) {
    diff += ((a[i] ?? 0) - (b[i] ?? 0)) ** 2;
    norm += (a[i] ?? 0) ** 2;
  }
  return Math.sqrt(diff) / Math.sqrt(norm);
}

function maxAbsDifference(a: Float32Array, b: Float32Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs((a[i] ?? 0) - (b[i] ?? 0)));
  return max;
}

describe.each([
  { name: 'sgd', optimizer: { type: 'sgd', learningRate: 0.1 }, maxAbs: 1e-5 },
  { name: 'adam', optimizer: { type: 'adam', learningRate: 0.003 }, maxAbs: undefined },
])('data-parallel equivalence with $name', ({ optimizer, maxAbs }) => {
  it('1, 2 and 3 workers reach the same parameters and losses', async () => {
    const one = await train(optimizer, 1);
    expect(one.losses).toHaveLength(STEPS);
    expect(one.state.optimizer.step).toBe(STEPS);
    for (const workers of [2, 3]) {
      const other = await train(optimizer, workers);
      expect(other.state.params.length).toBe(one.state.params.length);
      expect(relativeDistance(other.state.params, one.state.params)).toBeLessThanOrEqual(1e-4);
      if (maxAbs !== undefined)
        expect(maxAbsDifference(other.state.params, one.state.params)).toBeLessThanOrEqual(maxAbs);
      other.losses.forEach((loss, i) => expect(loss).toBeCloseTo(one.losses[i] ?? Number.NaN, 4));
    }
    // Training did move the parameters: the comparison above is not between two untouched inits.
    expect((one.losses.at(-1) ?? 0) < (one.losses[0] ?? 0)).toBe(true);
  });
});

describe('data-parallel equivalence with syncBatchNorm, through the real transport', () => {
  it('1 and 3 workers reach the same parameters and BatchNorm moving statistics', async () => {
    const model = {
      input: [784],
      syncBatchNorm: true,
      layers: [
        { type: 'dense', units: 32 },
        { type: 'batchNormalization' },
        { type: 'activation', activation: 'relu' },
        { type: 'dense', units: 10, activation: 'softmax' },
      ],
    };
    const sgd = { type: 'momentum', learningRate: 0.05 };
    const one = await train(sgd, 1, { model });
    const three = await train(sgd, 3, { model });
    expect(relativeDistance(three.state.params, one.state.params)).toBeLessThanOrEqual(1e-4);
    expect(three.state.nonTrainable.length).toBeGreaterThan(0);
    expect(relativeDistance(three.state.nonTrainable, one.state.nonTrainable)).toBeLessThanOrEqual(1e-4);
    three.losses.forEach((loss, i) => expect(loss).toBeCloseTo(one.losses[i] ?? Number.NaN, 4));
  });

  it('on a YAML graph (BatchNorm in a residual branch), 1 and 3 workers agree too', async () => {
    const model = {
      input: [784],
      syncBatchNorm: true,
      layers: [
        { name: 'stem', type: 'dense', units: 16 },
        { name: 'norm', type: 'batchNormalization' },
        { name: 'act', type: 'activation', activation: 'relu' },
        { type: 'add', inputs: ['stem', 'act'] },
        { type: 'dense', units: 10, activation: 'softmax' },
      ],
    };
    const sgd = { type: 'momentum', learningRate: 0.05 };
    const one = await train(sgd, 1, { model });
    const three = await train(sgd, 3, { model });
    expect(relativeDistance(three.state.params, one.state.params)).toBeLessThanOrEqual(1e-4);
    expect(three.state.nonTrainable.length).toBe(32);
    expect(relativeDistance(three.state.nonTrainable, one.state.nonTrainable)).toBeLessThanOrEqual(1e-4);
    three.losses.forEach((loss, i) => expect(loss).toBeCloseTo(one.losses[i] ?? Number.NaN, 4));
  });
});
