// Every model source keeps the central guarantee (ARCHITECTURE.md "What a step means"): the same
// job on 1 and 3 workers reaches the same parameters. Sources: a saved TensorFlow.js model
// (`from`, Sequential and functional), a model module with a residual block, dropout and a custom
// layer (`module`, examples/models/residual-mlp.js), and a YAML graph with a residual block.
// Real CLI processes; the saved models are made here with tf.
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { readMetrics } from '../../coordinator/run/run-directory.js';
import { loadDataset } from '../../shared/data/dataset.js';
import { resolveJob } from '../../shared/job.js';
import { epochOrder, globalBatch } from '../../shared/shard-plan.js';
import { decodeTrainState, type TrainState } from '../../shared/train-state.js';
import { exportModel, loadModelFile } from '../../worker/replica/model-export.js';
import { Replica } from '../../worker/replica/replica.js';
import { REPO_ROOT, runCli, smallMnistJob, tempDir, writeJob } from '../helpers/cli.js';
import { relativeDistance } from '../helpers/memory-world.js';

const STEPS = 20;
const BATCH = 32;

interface RunOutcome {
  state: TrainState;
  losses: number[];
}

function jobFor(model: Record<string, unknown>): Record<string, unknown> {
  return smallMnistJob({
    data: { format: 'mnist', limit: 1000 },
    model,
    optimizer: { type: 'adam', learningRate: 0.003 },
    training: { epochs: 1, batchSize: BATCH, maxSteps: STEPS },
    checkpoint: { everySteps: 0, keep: 1 },
    validation: { everySteps: 0 },
    consistencyCheckEverySteps: 5,
  });
}

async function train(dir: string, model: Record<string, unknown>, workers: number): Promise<RunOutcome> {
  const job = writeJob(dir, jobFor(model), `job-${workers}.yaml`);
  const out = path.join(dir, `run-${workers}`);
  const result = await runCli(['train', job, '--workers', String(workers), '--out', out]);
  expect(result.stderr, result.stdout).toBe('');
  expect(result.code).toBe(0);
  const last = readdirSync(path.join(out, 'checkpoints'))
    .filter((n) => n.startsWith('step-'))
    .sort()
    .at(-1);
  expect(last).toBe(`step-${String(STEPS).padStart(9, '0')}`);
  const state = decodeTrainState(readFileSync(path.join(out, 'checkpoints', last ?? '', 'state.bin')), last ?? '');
  const losses = readMetrics(path.join(out, 'metrics.jsonl'))
    .filter((r) => r['type'] === 'step')
    .map((r) => Number(r['loss']));
  return { state, losses };
}

async function expectOneEqualsThree(dir: string, model: Record<string, unknown>): Promise<RunOutcome> {
  const one = await train(dir, model, 1);
  const three = await train(dir, model, 3);
  expect(three.state.params.length).toBe(one.state.params.length);
  expect(relativeDistance(three.state.params, one.state.params)).toBeLessThanOrEqual(1e-4);
  three.losses.forEach((loss, i) => expect(loss).toBeCloseTo(one.losses[i] ?? Number.NaN, 4));
  // Training moved the parameters: the comparison is not between two untouched inits.
  expect((one.losses.at(-1) ?? 0) < (one.losses[0] ?? 0)).toBe(true);
  return one;
}

/** Saves `model` as <dir>/saved/model.json + weights.bin (what tf.js's model.save writes) and returns model.json's path. */
async function save(dir: string, model: tf.LayersModel): Promise<string> {
  const { modelJson, weights } = await exportModel(model);
  const folder = path.join(dir, 'saved');
  mkdirSync(folder, { recursive: true });
  writeFileSync(path.join(folder, 'model.json'), modelJson);
  writeFileSync(path.join(folder, 'weights.bin'), weights);
  return path.join(folder, 'model.json');
}

/** A Sequential shaped like smallMnistJob's YAML stack, with random (not ringtrain-seeded) weights. */
function savedSequential(): tf.Sequential {
  return tf.sequential({
    layers: [
      tf.layers.dense({
        units: 32,
        activation: 'relu',
        inputShape: [784],
        kernelInitializer: tf.initializers.randomNormal({ seed: 3 }),
      }),
      tf.layers.dense({
        units: 10,
        activation: 'softmax',
        kernelInitializer: tf.initializers.randomNormal({ seed: 4 }),
      }),
    ],
  });
}

/** The saved model's mean loss over step 0's global batch, computed here, outside ringtrain's training. */
async function firstBatchLoss(dir: string, modelJson: string, model: Record<string, unknown>): Promise<number> {
  const job = resolveJob(jobFor(model), 'test', {}, dir);
  const train = loadDataset(job).train;
  const batch = globalBatch(epochOrder(train.count, job.seed, 0), BATCH, 0);
  const x = new Float32Array(batch.length * 784);
  const y = new Float32Array(batch.length * 10);
  batch.forEach((sample, i) => {
    x.set(train.x.subarray(sample * 784, (sample + 1) * 784), i * 784);
    y.set(train.y.subarray(sample * 10, (sample + 1) * 10), i * 10);
  });
  const replica = new Replica(await loadModelFile(modelJson), job);
  const { lossSum, count } = replica.evaluate(x, y, batch.length, []);
  replica.dispose();
  return lossSum / count;
}

describe('model.from: a saved TensorFlow.js layers model', () => {
  it('a Sequential trains from its saved weights, the same on 1 and 3 workers; initialize: fresh is the seeded init', async () => {
    const dir = tempDir('ringtrain-from-seq-');
    const modelJson = await save(dir, savedSequential());
    const from = { input: [784], from: 'saved/model.json' };
    const pretrained = await expectOneEqualsThree(dir, from);
    // Fine-tuning starts from the saved weights: step 0's loss is the saved model's on that batch.
    expect(pretrained.losses[0]).toBeCloseTo(await firstBatchLoss(dir, modelJson, from), 4);
    // fresh: the same layers with ringtrain's seeded init train exactly as the YAML stack does.
    const fresh = await train(tempDir('ringtrain-from-fresh-'), { ...from, from: modelJson, initialize: 'fresh' }, 1);
    const yaml = await train(tempDir('ringtrain-from-yaml-'), smallMnistJob()['model'] as Record<string, unknown>, 1);
    expect(relativeDistance(fresh.state.params, yaml.state.params)).toBeLessThanOrEqual(1e-6);
    expect(relativeDistance(fresh.state.params, pretrained.state.params)).toBeGreaterThan(1e-2);
  });

  it('a functional model (two branches, concatenate) trains the same on 1 and 3 workers', async () => {
    const dir = tempDir('ringtrain-from-fn-');
    const input = tf.input({ shape: [784] });
    const a = tf.layers.dense({ units: 16, activation: 'relu' }).apply(input) as tf.SymbolicTensor;
    const b = tf.layers.dense({ units: 16, activation: 'tanh' }).apply(input) as tf.SymbolicTensor;
    const joined = tf.layers.concatenate().apply([a, b]) as tf.SymbolicTensor;
    const dropped = tf.layers.dropout({ rate: 0.25 }).apply(joined) as tf.SymbolicTensor;
    const output = tf.layers.dense({ units: 10, activation: 'softmax' }).apply(dropped) as tf.SymbolicTensor;
    await save(dir, tf.model({ inputs: input, outputs: output }));
    await expectOneEqualsThree(dir, { input: [784], from: 'saved/model.json' });
  });

  it('a model whose output does not fit the labels is refused before training, naming both shapes', async () => {
    const dir = tempDir('ringtrain-from-shape-');
    await save(
      dir,
      tf.sequential({ layers: [tf.layers.dense({ units: 5, inputShape: [784], activation: 'softmax' })] }),
    );
    const job = writeJob(dir, jobFor({ input: [784], from: 'saved/model.json' }));
    const result = await runCli(['train', job, '--workers', '1', '--out', path.join(dir, 'run')]);
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(
      /^ringtrain: .*need a model output of shape \[null, 10\], but the model outputs \[null, 5\]/,
    );
  });

  it('a model whose input does not fit the data is refused before training, naming both shapes', async () => {
    const dir = tempDir('ringtrain-from-input-');
    await save(
      dir,
      tf.sequential({ layers: [tf.layers.dense({ units: 10, inputShape: [100], activation: 'softmax' })] }),
    );
    const job = writeJob(dir, jobFor({ input: [784], from: 'saved/model.json' }));
    const result = await runCli(['train', job, '--workers', '1', '--out', path.join(dir, 'run')]);
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(
      /^ringtrain: .*the model's input has shape \[null, 100\], but the data's samples .* are \[null, 784\]/,
    );
  });
});

describe('model.module: a model written in code', () => {
  it('a residual block with dropout and a custom layer trains the same on 1 and 3 workers', async () => {
    const dir = tempDir('ringtrain-module-');
    await expectOneEqualsThree(dir, { input: [784], module: path.join(REPO_ROOT, 'examples/models/residual-mlp.js') });
  });
});

/** A module whose initial weights come from a source ringtrain cannot seed: every process draws others. */
const UNSEEDABLE_MODULE = `import { randomBytes } from 'node:crypto';
export function createModel(tf, job) {
  const model = tf.sequential({ layers: [tf.layers.dense({ units: 10, inputShape: job.model.input, activation: 'softmax' })] });
  const [kernel, bias] = model.getWeights();
  const values = Float32Array.from(randomBytes(kernel.size), (b) => (b / 255 - 0.5) * 0.1);
  model.setWeights([tf.tensor(values, kernel.shape), bias]);
  return model;
}
`;

describe('model.module whose initialisation cannot be seeded', () => {
  it("ranks start from rank 0's initial state even when createModel draws unseedable randomness", async () => {
    const dir = tempDir('ringtrain-module-broadcast-');
    writeFileSync(path.join(dir, 'model.js'), UNSEEDABLE_MODULE);
    const job = writeJob(dir, { ...jobFor({ input: [784], module: './model.js' }), consistencyCheckEverySteps: 2 });
    const result = await runCli(['train', job, '--workers', '3', '--out', path.join(dir, 'run')]);
    // Without the broadcast the parameter hashes differ at the first check (exit 12).
    expect(result.stderr, result.stdout).toBe('');
    expect(result.code).toBe(0);
  });
});

describe('model.layers as a graph', () => {
  it('a residual block with dropout trains the same on 1 and 3 workers', async () => {
    const dir = tempDir('ringtrain-graph-');
    await expectOneEqualsThree(dir, {
      input: [784],
      layers: [
        { name: 'stem', type: 'dense', units: 32, activation: 'relu' },
        { type: 'dense', units: 32, activation: 'relu' },
        { type: 'dropout', rate: 0.3 },
        { name: 'branch', type: 'dense', units: 32 },
        { type: 'add', inputs: ['stem', 'branch'] },
        { type: 'dense', units: 10, activation: 'softmax' },
      ],
    });
  });
});

describe('model.layers with a recurrent layer', () => {
  it('a YAML LSTM (digits read as 28 rows of 28 pixels) trains the same on 1 and 3 workers', async () => {
    const dir = tempDir('ringtrain-lstm-');
    await expectOneEqualsThree(dir, {
      input: [28, 28],
      layers: [
        { type: 'lstm', units: 16 },
        { type: 'dense', units: 10, activation: 'softmax' },
      ],
    });
  });
});
