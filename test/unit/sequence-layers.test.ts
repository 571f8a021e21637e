// The sequence and normalization layers of the job schema (embedding, lstm, gru, simpleRnn,
// conv1d, the 1-D/2-D and global poolings, layerNormalization): seeded initial weights that are
// bit-identical for one seed and differ for another, Keras's initializers (orthogonal recurrent
// kernels, ±0.05 embeddings, LSTM forget bias 1), and the schema's refusals.
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { JobConfigError } from '../../shared/errors.js';
import { resolveJob } from '../../shared/job.js';
import type { Job, JobInput } from '../../shared/job-schema.js';
import { Rng } from '../../shared/rng.js';
import { selectBackend } from '../../worker/backend/backend.js';
import { buildModel } from '../../worker/replica/model-builder.js';
import { orthogonal } from '../../worker/replica/seeded-init.js';

type Model = JobInput['model'];

function jobOf(model: Model, seed = 7): Job {
  return resolveJob(
    {
      seed,
      data: { format: 'xor' },
      model,
      loss: 'categoricalCrossentropy',
      optimizer: { type: 'sgd', learningRate: 0.1 },
      training: { epochs: 1, batchSize: 4 },
    },
    'sequence test job',
  );
}

const SEQUENCE_MODEL: Model = {
  input: [12],
  layers: [
    { type: 'embedding', inputDim: 20, outputDim: 6 },
    { type: 'conv1d', filters: 5, kernelSize: 3, padding: 'same', activation: 'relu' },
    { type: 'maxPooling1d', poolSize: 2 },
    { type: 'lstm', units: 7, returnSequences: true },
    { type: 'gru', units: 4, returnSequences: true },
    { type: 'averagePooling1d', poolSize: 2 },
    { type: 'layerNormalization' },
    { type: 'simpleRnn', units: 3, returnSequences: true },
    { type: 'globalAveragePooling1d' },
    { type: 'dense', units: 2, activation: 'softmax' },
  ],
};

function weightsByName(model: tf.LayersModel): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const w of model.weights) out.set(w.originalName, Float32Array.from(w.read().dataSync()));
  return out;
}

function sameBytes(a: Map<string, Float32Array>, b: Map<string, Float32Array>): boolean {
  if ([...a.keys()].join() !== [...b.keys()].join()) return false;
  return [...a].every(([name, values]) =>
    Buffer.from(values.buffer).equals(Buffer.from((b.get(name) as Float32Array).buffer)),
  );
}

beforeAll(async () => {
  await selectBackend('cpu');
});

describe('seeded initial weights of the sequence layers', () => {
  it('are bit-identical for one seed and differ for another, in every random weight', () => {
    // A tfjs random draw between the builds would change any weight a tfjs initializer still drew.
    const first = buildModel(jobOf(SEQUENCE_MODEL, 7));
    tf.dispose(tf.randomNormal([100]));
    const again = buildModel(jobOf(SEQUENCE_MODEL, 7));
    const other = buildModel(jobOf(SEQUENCE_MODEL, 8));
    const [a, b, c] = [first, again, other].map(weightsByName) as [
      Map<string, Float32Array>,
      Map<string, Float32Array>,
      Map<string, Float32Array>,
    ];
    expect(sameBytes(a, b)).toBe(true);
    for (const [name, values] of a) {
      const random = /(kernel|embeddings)$/.test(name);
      expect(Buffer.from(values.buffer).equals(Buffer.from((c.get(name) as Float32Array).buffer))).toBe(!random);
    }
    [first, again, other].forEach((m) => m.dispose());
  });

  it('follows Keras: orthogonal recurrent kernels, embeddings in ±0.05, LSTM forget bias 1, layerNormalization 1 and 0', () => {
    const model = buildModel(jobOf(SEQUENCE_MODEL));
    const w = weightsByName(model);
    const embeddings = w.get('embedding_0/embeddings') as Float32Array;
    expect(Math.max(...embeddings.map(Math.abs))).toBeLessThanOrEqual(0.05);
    expect(Math.max(...embeddings.map(Math.abs))).toBeGreaterThan(0.04);
    // lstm [7, 28]: rows orthonormal (rows < cols, so Qᵀ); gru [4, 12] likewise.
    for (const [name, rows, cols] of [
      ['lstm_3/recurrent_kernel', 7, 28],
      ['gru_4/recurrent_kernel', 4, 12],
      ['simpleRnn_7/recurrent_kernel', 3, 3],
    ] as const) {
      const q = tf.tensor2d(w.get(name) as Float32Array, [rows, cols]);
      const gram = tf.matMul(q, q, false, true);
      const identity = tf.eye(rows);
      expect(tf.max(tf.abs(tf.sub(gram, identity))).dataSync()[0]).toBeLessThan(1e-5);
      tf.dispose([q, gram, identity]);
    }
    const lstmBias = w.get('lstm_3/bias') as Float32Array;
    expect([...lstmBias]).toEqual([0, 1, 0, 0].flatMap((v) => new Array<number>(7).fill(v)));
    expect([...(w.get('gru_4/bias') as Float32Array)]).toEqual(new Array<number>(12).fill(0));
    expect([...(w.get('layerNormalization_6/gamma') as Float32Array)]).toEqual(new Array<number>(4).fill(1));
    expect([...(w.get('layerNormalization_6/beta') as Float32Array)]).toEqual(new Array<number>(4).fill(0));
    model.dispose();
  });

  it('orthogonal: a tall matrix has orthonormal columns, and the same stream gives the same matrix', () => {
    const values = orthogonal([9, 4], new Rng(3));
    expect(orthogonal([9, 4], new Rng(3))).toEqual(values);
    const q = tf.tensor2d(values, [9, 4]);
    const gram = tf.matMul(q, q, true, false);
    const identity = tf.eye(4);
    expect(tf.max(tf.abs(tf.sub(gram, identity))).dataSync()[0]).toBeLessThan(1e-5);
    tf.dispose([q, gram, identity]);
  });
});

describe('the sequence layers in the job schema', () => {
  it('build with the shapes tfjs computes', () => {
    const model = buildModel(jobOf(SEQUENCE_MODEL));
    expect(model.layers.map((l) => l.outputShape)).toEqual([
      [null, 12, 6],
      [null, 12, 5],
      [null, 6, 5],
      [null, 6, 7],
      [null, 6, 4],
      [null, 3, 4],
      [null, 3, 4],
      [null, 3, 3],
      [null, 3],
      [null, 2],
    ]);
    model.dispose();
  });

  it.each([
    [{ type: 'lstm', units: 4, dropout: 0.2 }, /recurrent dropout is unseeded/],
    [{ type: 'gru', units: 4, recurrentDropout: 0.1 }, /recurrent dropout is unseeded/],
    [{ type: 'lstm', units: 4, activation: 'softmax' }, /activation/],
  ])('refuses %j', (layer, message) => {
    const model = { input: [5, 3], layers: [layer, { type: 'dense', units: 2 }] } as Model;
    expect(() => jobOf(model)).toThrow(JobConfigError);
    expect(() => jobOf(model)).toThrow(message);
  });

  it('names a layer that gets the wrong input rank', () => {
    const model: Model = {
      input: [8],
      layers: [
        { type: 'lstm', units: 4 },
        { type: 'dense', units: 2 },
      ],
    };
    expect(() => jobOf(model)).toThrow(/model\.layers\.0 \(lstm\): needs a 2-D input \[steps, features\], got rank 1/);
  });
});
