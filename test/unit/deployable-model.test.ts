// The deployable export: on RAW rows it answers what the trained model answers on standardised
// rows, in the label's own units; the live model is left bit-identical and no tensor leaks.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDataset, type Dataset } from '../../shared/data/dataset.js';
import { resolveJob } from '../../shared/job.js';
import type { Job } from '../../shared/job-schema.js';
import { MODEL_METADATA_KEY } from '../../shared/model-metadata.js';
import { Rng } from '../../shared/rng.js';
import { selectBackend } from '../../worker/backend/backend.js';
import { exportDeployableModel } from '../../worker/replica/deployable-model.js';
import { buildModel } from '../../worker/replica/model-builder.js';
import { loadModelFromDir } from '../../worker/replica/model-export.js';

let dir = '';
beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'ringtrain-deployable-'));
  await selectBackend('cpu');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** 40 rows of 4 features on very different scales and a label: a class ("kind") or a value ("price"). */
function writeCsv(label: 'kind' | 'price'): string {
  const rng = new Rng(11);
  const lines = Array.from({ length: 40 }, (_, i) => {
    const x = [rng.next() * 10, 500 + rng.next() * 300, -3 + rng.next(), 1e4 * rng.next()];
    const y = label === 'kind' ? ['cat', 'dog', 'emu'][i % 3] : (x[0] as number) * 20 + 1000;
    return [...x.map((v) => v.toFixed(3)), y].join(',');
  });
  const file = path.join(dir, `${label}.csv`);
  writeFileSync(file, [`a,b,c,d,${label}`, ...lines].join('\n'));
  return file;
}

function csvJob(
  file: string,
  spec: { label: string; task: string; input: number[]; layers: unknown[]; loss: string },
): Job {
  const data = { format: 'csv', path: file, label: spec.label, task: spec.task, split: { validation: 0.2, test: 0.2 } };
  return resolveJob(
    {
      data,
      model: { input: spec.input, layers: spec.layers },
      loss: spec.loss,
      optimizer: { type: 'sgd', learningRate: 0.1 },
      training: { epochs: 1, batchSize: 4 },
    },
    'test job',
  );
}

async function exportAndLoad(
  model: tf.LayersModel,
  job: Job,
  ds: Dataset,
): Promise<{ loaded: tf.LayersModel; json: unknown }> {
  const files = await exportDeployableModel(model, job, ds);
  const out = mkdtempSync(path.join(dir, 'model-'));
  writeFileSync(path.join(out, 'model.json'), files.modelJson);
  writeFileSync(path.join(out, 'weights.bin'), files.weights);
  return { loaded: await loadModelFromDir(out), json: JSON.parse(files.modelJson) };
}

/** Raw rows of the test split (undoing the dataset's standardisation). */
function rawRows(ds: Dataset): Float32Array {
  const n = ds.normalization;
  if (n === undefined) throw new Error('expected normalisation');
  return ds.test.x.map(
    (v, i) => v * (n.featureStd[i % ds.featureSize] as number) + (n.featureMean[i % ds.featureSize] as number),
  );
}

function weightBytes(model: tf.LayersModel): number[] {
  return model.getWeights().flatMap((w) => Array.from(w.dataSync()));
}

describe('exportDeployableModel', () => {
  it('regression: raw rows in, label units out; live model untouched; no tensor leaks', async () => {
    const job = csvJob(writeCsv('price'), {
      label: 'price',
      task: 'regression',
      input: [4],
      layers: [
        { type: 'dense', units: 8, activation: 'relu' },
        { type: 'dense', units: 1 },
      ],
      loss: 'meanSquaredError',
    });
    const ds = loadDataset(job);
    const model = buildModel(job);
    const before = weightBytes(model);
    const tensors = tf.memory().numTensors;
    const { loaded, json } = await exportAndLoad(model, job, ds);
    expect(weightBytes(model)).toEqual(before);
    // A second export (e.g. of the best weights) is byte-identical: the first left nothing behind.
    const [first, second] = [await exportDeployableModel(model, job, ds), await exportDeployableModel(model, job, ds)];
    expect(second.modelJson).toBe(first.modelJson);
    expect(Buffer.from(second.weights).equals(Buffer.from(first.weights))).toBe(true);
    const n = ds.normalization;
    if (n?.labelMean === undefined || n.labelStd === undefined) throw new Error('expected label normalisation');
    const expected = tf.tidy(() =>
      (model.predict(tf.tensor2d(ds.test.x, [ds.test.count, 4])) as tf.Tensor)
        .mul(n.labelStd ?? 1)
        .add(n.labelMean ?? 0)
        .dataSync(),
    );
    const actual = tf.tidy(() =>
      (loaded.predict(tf.tensor2d(rawRows(ds), [ds.test.count, 4])) as tf.Tensor).dataSync(),
    );
    expect(actual.length).toBe(ds.test.count);
    actual.forEach((v, i) => expect(v).toBeCloseTo(expected[i] as number, 2));
    loaded.dispose();
    // The export's model copy and its added layers are freed again.
    expect(tf.memory().numTensors).toBe(tensors);
    const meta = (json as { userDefinedMetadata: Record<string, { featureColumns: string[]; labelColumn: string }> })
      .userDefinedMetadata[MODEL_METADATA_KEY];
    expect(meta).toMatchObject({ featureColumns: ['a', 'b', 'c', 'd'], labelColumn: 'price', task: 'regression' });
    model.dispose();
  });

  it('classification with a 2-D input: standardised per feature, shape kept, class names in output order', async () => {
    const job = csvJob(writeCsv('kind'), {
      label: 'kind',
      task: 'classification',
      input: [2, 2],
      layers: [{ type: 'flatten' }, { type: 'dense', units: 3, activation: 'softmax' }],
      loss: 'sparseCategoricalCrossentropy',
    });
    const ds = loadDataset(job);
    const model = buildModel(job);
    const { loaded, json } = await exportAndLoad(model, job, ds);
    const expected = tf.tidy(() =>
      (model.predict(tf.tensor3d(ds.test.x, [ds.test.count, 2, 2])) as tf.Tensor).dataSync(),
    );
    const actual = tf.tidy(() =>
      (loaded.predict(tf.tensor3d(rawRows(ds), [ds.test.count, 2, 2])) as tf.Tensor).dataSync(),
    );
    actual.forEach((v, i) => expect(v).toBeCloseTo(expected[i] as number, 5));
    expect(loaded.inputs[0]?.shape).toEqual([null, 2, 2]);
    expect(
      (json as { userDefinedMetadata: Record<string, unknown> }).userDefinedMetadata[MODEL_METADATA_KEY],
    ).toMatchObject({ classNames: ['cat', 'dog', 'emu'], labelEncoding: 'sparse', numClasses: 3 });
    loaded.dispose();
    model.dispose();
  });

  it('an autoencoder (target: input) answers in the raw feature units', async () => {
    const base = csvJob(writeCsv('kind'), {
      label: 'kind',
      task: 'classification',
      input: [4],
      layers: [
        { type: 'dense', units: 2, activation: 'tanh' },
        { type: 'dense', units: 4 },
      ],
      loss: 'meanSquaredError',
    });
    const job = { ...base, data: { ...base.data, target: 'input' } } as Job;
    const ds = loadDataset(job);
    const n = ds.normalization;
    if (n === undefined) throw new Error('expected normalisation');
    const model = buildModel(job);
    const { loaded } = await exportAndLoad(model, job, ds);
    const std = (model.predict(tf.tensor2d(ds.test.x, [ds.test.count, 4])) as tf.Tensor).dataSync();
    const expected = std.map((v, i) => v * (n.featureStd[i % 4] as number) + (n.featureMean[i % 4] as number));
    const actual = tf.tidy(() =>
      (loaded.predict(tf.tensor2d(rawRows(ds), [ds.test.count, 4])) as tf.Tensor).dataSync(),
    );
    actual.forEach((v, i) => expect(v).toBeCloseTo(expected[i] as number, 1));
    loaded.dispose();
    model.dispose();
  });
  it('a functional (non-Sequential) model is nested whole; same answers, no tensor leaks', async () => {
    const job = csvJob(writeCsv('kind'), {
      label: 'kind',
      task: 'classification',
      input: [4],
      layers: [{ type: 'dense', units: 3, activation: 'softmax' }],
      loss: 'categoricalCrossentropy',
    });
    const ds = loadDataset(job);
    const input = tf.input({ shape: [4] });
    const hidden = tf.layers.dense({ units: 5, activation: 'relu', name: 'hidden' }).apply(input) as tf.SymbolicTensor;
    const output = tf.layers.dense({ units: 3, activation: 'softmax', name: 'out' }).apply(hidden) as tf.SymbolicTensor;
    const model = tf.model({ inputs: input, outputs: output, name: 'graph' });
    const tensors = tf.memory().numTensors;
    const { loaded } = await exportAndLoad(model, job, ds);
    const expected = tf.tidy(() => (model.predict(tf.tensor2d(ds.test.x, [ds.test.count, 4])) as tf.Tensor).dataSync());
    const actual = tf.tidy(() =>
      (loaded.predict(tf.tensor2d(rawRows(ds), [ds.test.count, 4])) as tf.Tensor).dataSync(),
    );
    actual.forEach((v, i) => expect(v).toBeCloseTo(expected[i] as number, 5));
    loaded.dispose();
    expect(tf.memory().numTensors).toBe(tensors);
    model.dispose();
  });
  it('a loss fromLogits: the export appends softmax, so it answers probabilities', async () => {
    const base = csvJob(writeCsv('kind'), {
      label: 'kind',
      task: 'classification',
      input: [4],
      layers: [{ type: 'dense', units: 3 }],
      loss: 'categoricalCrossentropy',
    });
    const job = { ...base, loss: { type: 'categoricalCrossentropy', fromLogits: true } } as Job;
    const ds = loadDataset(job);
    const model = buildModel(job);
    const { loaded, json } = await exportAndLoad(model, job, ds);
    const expected = tf.tidy(() =>
      tf.softmax(model.predict(tf.tensor2d(ds.test.x, [ds.test.count, 4])) as tf.Tensor2D).dataSync(),
    );
    const actual = tf.tidy(() =>
      (loaded.predict(tf.tensor2d(rawRows(ds), [ds.test.count, 4])) as tf.Tensor).dataSync(),
    );
    actual.forEach((v, i) => expect(v).toBeCloseTo(expected[i] as number, 5));
    expect(
      (json as { userDefinedMetadata: Record<string, unknown> }).userDefinedMetadata[MODEL_METADATA_KEY],
    ).toMatchObject({ loss: 'categoricalCrossentropy', fromLogits: true });
    loaded.dispose();
    model.dispose();
  });
});
