// The coordinator's probe (coordinator/model-probe.ts): it builds a graph, module or saved model
// once, refuses one that does not fit the data, and sizes it for the memory estimate.
import { mkdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { probeModel } from '../../coordinator/model-probe.js';
import { loadDataset } from '../../shared/data/dataset.js';
import { JobConfigError } from '../../shared/errors.js';
import { resolveJob } from '../../shared/job.js';
import type { Job } from '../../shared/job-schema.js';
import { estimateMemory } from '../../shared/memory-estimate.js';
import { selectBackend } from '../../worker/backend/backend.js';
import { exportDeployableModel } from '../../worker/replica/deployable-model.js';
import { buildModel } from '../../worker/replica/model-builder.js';
import { removeTempDirs, tempDir } from '../helpers/cli.js';

function xorJob(model: Record<string, unknown>, dir: string): Job {
  return resolveJob(
    {
      data: { format: 'xor', samples: 16 },
      model: { input: [2], ...model },
      loss: 'binaryCrossentropy',
      optimizer: { type: 'sgd', learningRate: 0.1 },
      training: { epochs: 1, batchSize: 4 },
    },
    'job.yaml',
    {},
    dir,
  );
}

beforeAll(async () => {
  await selectBackend('cpu');
});
afterAll(removeTempDirs);

describe('probeModel', () => {
  it('sizes a module model for the memory estimate from the built model', async () => {
    const dir = tempDir('ringtrain-probe-');
    writeFileSync(
      path.join(dir, 'model.js'),
      `export function createModel(tf, job) {
        const input = tf.input({ shape: job.model.input });
        const a = tf.layers.dense({ units: 8, activation: 'relu' }).apply(input);
        const b = tf.layers.dense({ units: 8 }).apply(a);
        const sum = tf.layers.add().apply([a, b]);
        return tf.model({ inputs: input, outputs: tf.layers.dense({ units: 1, activation: 'sigmoid' }).apply(sum) });
      }\n`,
    );
    const job = xorJob({ module: './model.js' }, dir);
    const probe = await probeModel(job, loadDataset(job), 'job.yaml');
    // 2·8+8, 8·8+8, 8·1+1 parameters; outputs 8 + 8 + 8 (add) + 1 floats per sample.
    expect(probe).toEqual({ paramCount: 24 + 72 + 9, layerOutputs: 25 });
    expect(estimateMemory(job, 1, probe).paramCount).toBe(105);
    expect(() => estimateMemory(job, 1)).toThrow(/needs the probe/);
  });

  it("refuses a graph whose add joins different shapes, with tf.js's reason", async () => {
    const job = xorJob(
      {
        layers: [
          { name: 'a', type: 'dense', units: 4 },
          { name: 'b', type: 'dense', units: 3, inputs: ['input'] },
          { type: 'add', inputs: ['a', 'b'] },
          { type: 'dense', units: 1, activation: 'sigmoid' },
        ],
      },
      tempDir('ringtrain-probe-'),
    );
    const refused = probeModel(job, loadDataset(job), 'job.yaml');
    await expect(refused).rejects.toThrow(JobConfigError);
    await expect(probeModel(job, loadDataset(job), 'job.yaml')).rejects.toThrow(/^job\.yaml: model: cannot be built: /);
  });

  it('checks a YAML stack by shape arithmetic, naming both shapes', async () => {
    const job = xorJob({ layers: [{ type: 'dense', units: 3, activation: 'sigmoid' }] }, tempDir('ringtrain-probe-'));
    const numTensors = tf.memory().numTensors;
    await expect(probeModel(job, loadDataset(job), 'job.yaml')).rejects.toThrow(
      /need a model output of shape \[null, 1\], but the model outputs \[null, 3\]/,
    );
    expect(tf.memory().numTensors).toBe(numTensors); // nothing was built
  });

  it('refuses to fine-tune an exported model (it standardises raw features) on standardised data', async () => {
    const dir = tempDir('ringtrain-probe-');
    const rows = Array.from({ length: 40 }, (_, i) => `${i},${100 + 3 * i},${i % 2 === 0 ? 'even' : 'odd'}`);
    writeFileSync(path.join(dir, 'data.csv'), ['a,b,parity', ...rows].join('\n') + '\n');
    const csvJob = (model: Record<string, unknown>, normalize: boolean): Job =>
      resolveJob(
        {
          data: { format: 'csv', path: 'data.csv', label: 'parity', task: 'classification', normalize },
          model: { input: [2], ...model },
          loss: 'categoricalCrossentropy',
          optimizer: { type: 'sgd', learningRate: 0.1 },
          training: { epochs: 1, batchSize: 4 },
        },
        'job.yaml',
        {},
        dir,
      );
    const first = csvJob({ layers: [{ type: 'dense', units: 2, activation: 'softmax' }] }, true);
    const trained = buildModel(first);
    const files = await exportDeployableModel(trained, first, loadDataset(first));
    trained.dispose();
    writeFileSync(path.join(dir, 'model.json'), files.modelJson);
    writeFileSync(path.join(dir, 'weights.bin'), files.weights);
    const again = csvJob({ from: 'model.json' }, true);
    await expect(probeModel(again, loadDataset(again), 'job.yaml')).rejects.toThrow(
      /model\.from: .*model\.json is a model ringtrain exported, .*layer ringtrain_standardize.*set data\.normalize: false/,
    );
    const raw = csvJob({ from: 'model.json' }, false);
    await expect(probeModel(raw, loadDataset(raw), 'job.yaml')).resolves.toBeDefined();
  });

  it('pins model.from through symlinks when the job is read (runs/latest moves to the new run before training)', async () => {
    const dir = tempDir('ringtrain-probe-');
    const runA = path.join(dir, 'run-a', 'model');
    mkdirSync(runA, { recursive: true });
    mkdirSync(path.join(dir, 'run-b'));
    const first = xorJob({ layers: [{ type: 'dense', units: 1, activation: 'sigmoid' }] }, dir);
    const trained = buildModel(first);
    const files = await exportDeployableModel(trained, first, loadDataset(first));
    trained.dispose();
    writeFileSync(path.join(runA, 'model.json'), files.modelJson);
    writeFileSync(path.join(runA, 'weights.bin'), files.weights);
    symlinkSync('run-a', path.join(dir, 'latest'));
    const job = xorJob({ from: 'latest/model/model.json' }, dir);
    // The CLI now points latest at the new (empty) run directory, as it does before training.
    rmSync(path.join(dir, 'latest'));
    symlinkSync('run-b', path.join(dir, 'latest'));
    expect(job.model.from).toBe(path.join(realpathSync(runA), 'model.json'));
    await expect(probeModel(job, loadDataset(job), 'job.yaml')).resolves.toBeDefined();
  });
});
