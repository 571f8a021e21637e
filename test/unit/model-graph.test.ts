// The graph form of model.layers (shared/model-graph.ts, model-builder.ts) and the replica on a
// graph: wiring errors name model.layers.N, seeded dropout inside a branch is independent of
// sharding, unseedable layers are refused, syncBatchNorm on a graph is taken, and a model file's
// content is part of the job hash.
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobConfigError, UnseededLayerError } from '../../shared/errors.js';
import { DEFAULT_JOB, jobHash, resolveJob } from '../../shared/job.js';
import type { Job } from '../../shared/job-schema.js';
import { Rng } from '../../shared/rng.js';
import { selectBackend } from '../../worker/backend/backend.js';
import { buildModel } from '../../worker/replica/model-builder.js';
import { Replica } from '../../worker/replica/replica.js';
import { removeTempDirs, tempDir } from '../helpers/cli.js';

function graphJob(layers: Array<Record<string, unknown>>, extra: Record<string, unknown> = {}): Job {
  return resolveJob(
    { ...structuredClone(DEFAULT_JOB), model: { input: [3], layers, ...extra }, metrics: [] },
    'job.yaml',
  );
}

function problemsOf(layers: Array<Record<string, unknown>>): string {
  try {
    graphJob(layers);
  } catch (error) {
    expect(error).toBeInstanceOf(JobConfigError);
    return (error as JobConfigError).message;
  }
  throw new Error('the job was accepted');
}

const RESIDUAL_WITH_DROPOUT = [
  { name: 'stem', type: 'dense', units: 6, activation: 'tanh' },
  { type: 'dense', units: 6, activation: 'relu' },
  { type: 'dropout', rate: 0.5 },
  { name: 'branch', type: 'dense', units: 6 },
  { type: 'add', inputs: ['stem', 'branch'] },
  { name: 'side', type: 'dense', units: 2, inputs: ['input'] },
  { type: 'concatenate', inputs: ['add_4', 'side'] },
  { type: 'dense', units: 3, activation: 'softmax' },
];

beforeAll(async () => {
  await selectBackend('cpu');
});
afterAll(removeTempDirs);

describe('graph validation', () => {
  it('names the layer and field of an unknown input, a forward reference, a duplicate name and an unused layer', () => {
    expect(problemsOf([{ type: 'dense', units: 3, inputs: ['nope'] }])).toMatch(
      /model\.layers\.0\.inputs: no layer is named "nope"/,
    );
    expect(
      problemsOf([
        { type: 'dense', units: 3, inputs: ['later'] },
        { name: 'later', type: 'dense', units: 3 },
      ]),
    ).toMatch(/model\.layers\.0\.inputs: "later" is model\.layers\.1, which is not before this layer/);
    expect(
      problemsOf([
        { name: 'a', type: 'dense', units: 3 },
        { name: 'a', type: 'dense', units: 3, inputs: ['a'] },
      ]),
    ).toMatch(/model\.layers\.1\.name: "a" is already the name of model\.layers\.0/);
    expect(
      problemsOf([
        { name: 'unused', type: 'dense', units: 3 },
        { type: 'dense', units: 3, inputs: ['input'] },
      ]),
    ).toMatch(/model\.layers\.0\.inputs: "unused" feeds no later layer/);
    expect(problemsOf([{ type: 'dense', units: 3 }, { type: 'add' }])).toMatch(
      /model\.layers\.1\.inputs: add needs two or more inputs, got 1/,
    );
  });

  it('builds a functional model whose layers are wired as written', () => {
    const model = buildModel(graphJob(RESIDUAL_WITH_DROPOUT));
    expect(model).not.toBeInstanceOf(tf.Sequential);
    const add = model.getLayer('add_4');
    expect(add.inboundNodes[0]?.inboundLayers.map((l) => l.name)).toEqual(['stem', 'branch']);
    expect(model.getLayer('concatenate_6').outputShape).toEqual([null, 8]);
    expect(model.outputs[0]?.shape).toEqual([null, 3]);
    model.dispose();
  });

  it('a stack stays the tf.Sequential it always was (same weight names)', () => {
    const model = buildModel(graphJob([{ type: 'dense', units: 3, activation: 'softmax' }]));
    expect(model).toBeInstanceOf(tf.Sequential);
    expect(model.trainableWeights.map((w) => w.originalName)).toEqual(['dense_0/kernel', 'dense_0/bias']);
    model.dispose();
  });
});

describe('the replica on a graph', () => {
  const count = 6;
  const rng = new Rng(5);
  const x = Float32Array.from({ length: count * 3 }, () => 2 * rng.next() - 1);
  const y = new Float32Array(count * 3);
  for (let i = 0; i < count; i++) y[i * 3 + (i % 3)] = 1;
  const sampleIds = Uint32Array.from([9, 2, 40, 7, 13, 5]);

  it('dropout masks inside a branch depend on the sample, not on the shard: a batch equals its halves', () => {
    const job = graphJob(RESIDUAL_WITH_DROPOUT);
    const replica = new Replica(buildModel(job), job);
    const whole = new Float32Array(replica.paramCount);
    const total = replica.computeGradients(x, y, count, 3, sampleIds, whole);
    const first = new Float32Array(replica.paramCount);
    const second = new Float32Array(replica.paramCount);
    const a = replica.computeGradients(x.subarray(0, 9), y.subarray(0, 9), 3, 3, sampleIds.subarray(0, 3), first);
    const b = replica.computeGradients(x.subarray(9), y.subarray(9), 3, 3, sampleIds.subarray(3), second);
    expect(a.lossSum + b.lossSum).toBeCloseTo(total.lossSum, 4);
    whole.forEach((g, i) => expect(g).toBeCloseTo((first[i] as number) + (second[i] as number), 4));
    // The masks are applied: another step draws others, and evaluation (no dropout) differs.
    const other = new Float32Array(replica.paramCount);
    expect(replica.computeGradients(x, y, count, 4, sampleIds, other).lossSum).not.toBeCloseTo(total.lossSum, 4);
    expect(replica.evaluate(x, y, count, []).lossSum).not.toBeCloseTo(total.lossSum, 4);
    const before = tf.memory().numTensors;
    replica.computeGradients(x, y, count, 5, sampleIds, other);
    expect(tf.memory().numTensors).toBe(before);
    replica.dispose();
  });

  it('refuses a layer whose randomness cannot be seeded, naming it', () => {
    const job = graphJob([{ type: 'dense', units: 3, activation: 'softmax' }]);
    const input = tf.input({ shape: [3] });
    const noisy = tf.layers.gaussianNoise({ stddev: 0.1, name: 'noisy' }).apply(input) as tf.SymbolicTensor;
    const out = tf.layers.dense({ units: 3 }).apply(noisy) as tf.SymbolicTensor;
    const model = tf.model({ inputs: input, outputs: out });
    expect(() => new Replica(model, job)).toThrow(UnseededLayerError);
    expect(() => new Replica(model, job)).toThrow(/layer "noisy" is a GaussianNoise layer/);
    model.dispose();
  });

  it('takes syncBatchNorm on a graph (sync-batch-norm-graph.test.ts checks the pass)', () => {
    const layers = [
      { name: 'a', type: 'dense', units: 3 },
      { type: 'batchNormalization' },
      { type: 'add', inputs: ['a', 'batchNormalization_1'] },
    ];
    const job = graphJob(layers, { syncBatchNorm: true });
    const replica = new Replica(buildModel(job), job);
    expect(replica.needsCollectives).toBe(true);
    replica.dispose();
  });
});

describe('model files in the job hash', () => {
  it('a module with other content is another job', () => {
    const dir = tempDir('ringtrain-hash-');
    const file = path.join(dir, 'model.js');
    writeFileSync(file, 'export function createModel() {}\n');
    const raw = { ...structuredClone(DEFAULT_JOB), model: { input: [784], module: './model.js' } };
    const before = jobHash(resolveJob(structuredClone(raw), 'job.yaml', {}, dir));
    writeFileSync(file, 'export function createModel() { /* changed */ }\n');
    expect(jobHash(resolveJob(structuredClone(raw), 'job.yaml', {}, dir))).not.toBe(before);
    expect(() => resolveJob(structuredClone(raw), 'job.yaml', {}, path.join(dir, 'elsewhere'))).toThrow(
      /model: .*model\.js: file not found/,
    );
  });
});
