// syncBatchNorm on graph models (sync-batch-norm-graph.ts, sync-batch-norm-pass.ts): the pass
// cuts a graph at its BatchNorm nodes and carries every live tensor across each cut. One rank's
// pass equals tfjs's own BatchNorm (gradient, loss, moving statistics, no leaked tensors) on
// graphs whose cuts carry several tensors; 1 and 3 ranks on the in-memory ring reach the same
// parameters and identical moving statistics, which the same 3 ranks without syncBatchNorm do
// not; what the pass cannot cut is refused with one line.
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { JobConfigError } from '../../shared/errors.js';
import { loadDataset } from '../../shared/data/dataset.js';
import { resolveJob } from '../../shared/job.js';
import type { Job, JobInput } from '../../shared/job-schema.js';
import { selectBackend } from '../../worker/backend/backend.js';
import { buildModel } from '../../worker/replica/model-builder.js';
import { Replica } from '../../worker/replica/replica.js';
import { syncGraphOf } from '../../worker/replica/sync-batch-norm-graph.js';
import {
  expectSyncedMatchesPlain,
  relativeDistance,
  TOLERANCE,
  trainWorld,
  XOR_DATA,
  xorJob,
} from '../helpers/memory-world.js';

beforeAll(async () => {
  await selectBackend('cpu');
});

/**
 * BatchNorm in a branch whose input also feeds a residual add (so the cut carries the BatchNorm's
 * input too), a side branch from the model input (carried across both cuts), dropout inside the
 * branch, and a concatenate.
 */
const RESIDUAL_BN: NonNullable<JobInput['model']['layers']> = [
  { name: 'stem', type: 'dense', units: 6, activation: 'tanh' },
  { name: 'bn1', type: 'batchNormalization', momentum: 0.8 },
  { name: 'branch', type: 'dense', units: 6, activation: 'relu' },
  { name: 'drop', type: 'dropout', rate: 0.25 },
  { name: 'bn2', type: 'batchNormalization', momentum: 0.7 },
  { name: 'res', type: 'add', inputs: ['stem', 'bn2'] },
  { name: 'side', type: 'dense', units: 3, inputs: ['input'] },
  { name: 'cat', type: 'concatenate', inputs: ['res', 'side'] },
  { type: 'dense', units: 2, activation: 'softmax' },
];

/** BatchNorm on the model input, which a residual add reads again after the cut; BatchNorm last. */
const INPUT_BN: NonNullable<JobInput['model']['layers']> = [
  { name: 'norm', type: 'batchNormalization' },
  { name: 'wide', type: 'dense', units: 2, activation: 'tanh' },
  { name: 'skip', type: 'add', inputs: ['input', 'wide'] },
  { type: 'dense', units: 2 },
  { type: 'batchNormalization', momentum: 0.5 },
];

function graphJob(layers: NonNullable<JobInput['model']['layers']>, syncBatchNorm: boolean): Job {
  return resolveJob(
    xorJob({
      model: { input: [2], layers, syncBatchNorm },
      training: { epochs: 4, batchSize: 11 },
      ...(layers === INPUT_BN ? { loss: 'meanSquaredError' } : {}),
    }),
    'graph job',
  );
}

describe('the graph cut', () => {
  it('carries the set of live tensors across each BatchNorm cut', () => {
    const model = buildModel(graphJob(RESIDUAL_BN, true));
    const graph = syncGraphOf(model);
    const nameOf = (id: number): string => {
      if (id === graph.input) return 'input';
      return graph.nodes.find((n) => n.outputs.includes(id))?.layer.name ?? '?';
    };
    expect(graph.cuts.map((c) => graph.nodes[c]?.layer.name)).toEqual(['bn1', 'bn2']);
    expect(graph.segments).toHaveLength(3);
    // After bn1: its output, and the stem (read by the add) and the side branch or the input (read by side).
    const carried = graph.segments.slice(1).map((s) => s.inputs.map(nameOf).sort());
    expect(carried[0]).toContain('bn1');
    expect(carried[0]).toContain('stem');
    expect(carried[0]?.some((n) => n === 'input' || n === 'side')).toBe(true);
    expect(carried[1]).toContain('bn2');
    expect(carried[1]).toContain('stem');
    expect(graph.segments.at(-1)?.outputs).toEqual([graph.output]);
    model.dispose();
  });
});

describe('syncBatchNorm on a graph, one rank', () => {
  it.each([
    { name: 'residual with BatchNorm in a branch', layers: RESIDUAL_BN },
    { name: 'BatchNorm on the input, read again by a residual; BatchNorm last', layers: INPUT_BN },
  ])("matches tfjs's own BatchNorm ($name): gradient, loss, moving statistics, no leaks", async ({ layers }) => {
    const plain = graphJob(layers, false);
    const synced = graphJob(layers, true);
    const count = 9;
    const x = Float32Array.from({ length: count * 2 }, (_, i) => Math.sin(i * 1.7) * 3 + 1);
    const y = Float32Array.from({ length: count * 2 }, (_, i) => (i % 2 === Math.floor(i / 2) % 2 ? 1 : 0));
    const ids = Uint32Array.from({ length: count }, (_, i) => 20 + i);
    const bnCount = layers.filter((l) => l.type === 'batchNormalization').length;
    const { a, b, gradB } = await expectSyncedMatchesPlain(plain, synced, { x, y, ids, count }, bnCount);
    // An empty slice joins the same collectives and leaks nothing either.
    const empty = tf.memory().numTensors;
    let calls = 0;
    await b.computeGradientsSynced(x, y, 0, 4, ids, gradB, () => Promise.resolve(void calls++));
    expect(calls).toBe(2 * bnCount);
    expect(tf.memory().numTensors).toBe(empty);
    a.dispose();
    b.dispose();
  });

  it('matches on a hand-built functional model (as a model module returns)', async () => {
    const build = (): tf.LayersModel => {
      const input = tf.input({ shape: [4] });
      const h = tf.layers.dense({ units: 5, activation: 'relu', kernelInitializer: 'ones', name: 'h' }).apply(input);
      const n = tf.layers.batchNormalization({ name: 'n' }).apply(h);
      const d = tf.layers.dense({ units: 5, kernelInitializer: 'glorotNormal', name: 'd' }).apply(n);
      const sum = tf.layers.add().apply([h, d] as tf.SymbolicTensor[]);
      const out = tf.layers.dense({ units: 3, activation: 'softmax', name: 'o' }).apply(sum);
      return tf.model({ inputs: input, outputs: out as tf.SymbolicTensor });
    };
    const job = (sync: boolean): Job =>
      resolveJob(
        {
          ...xorJob({}),
          data: XOR_DATA,
          model: { input: [4], layers: [{ type: 'dense', units: 3 }], syncBatchNorm: sync },
        },
        'module-like job',
      );
    const ma = build();
    const mb = build();
    mb.setWeights(ma.getWeights());
    const a = new Replica(ma, job(false));
    const b = new Replica(mb, job(true));
    const count = 6;
    const x = Float32Array.from({ length: count * 4 }, (_, i) => Math.cos(i * 0.9) * 2);
    const y = Float32Array.from({ length: count * 3 }, (_, i) => (i % 3 === Math.floor(i / 3) % 3 ? 1 : 0));
    const ids = Uint32Array.from({ length: count }, (_, i) => i);
    const gradA = new Float32Array(a.paramCount);
    const gradB = new Float32Array(b.paramCount);
    const lossA = a.computeGradients(x, y, count, 0, ids, gradA).lossSum;
    const before = tf.memory().numTensors;
    const lossB = (await b.computeGradientsSynced(x, y, count, 0, ids, gradB, () => Promise.resolve())).lossSum;
    expect(tf.memory().numTensors).toBe(before);
    expect(lossB).toBeCloseTo(lossA, 4);
    expect(relativeDistance(gradB, gradA)).toBeLessThanOrEqual(1e-4);
    a.dispose();
    b.dispose();
  });
});

describe('syncBatchNorm on a graph, 1 vs 3 ranks', () => {
  it('reaches the same parameters and identical moving statistics on every rank; without it 3 ranks differ', async () => {
    const steps = 20;
    const job = graphJob(RESIDUAL_BN, true);
    const dataset = loadDataset(job);
    const one = await trainWorld(job, dataset, 1, steps);
    expect(relativeDistance(one.params, one.initial)).toBeGreaterThan(100 * TOLERANCE);
    const three = await trainWorld(job, dataset, 3, steps);
    expect(relativeDistance(three.params, one.params)).toBeLessThanOrEqual(TOLERANCE);
    for (const moving of three.nonTrainable) expect(moving).toEqual(three.nonTrainable[0]);
    expect(
      relativeDistance(three.nonTrainable[0] as Float32Array, one.nonTrainable[0] as Float32Array),
    ).toBeLessThanOrEqual(TOLERANCE);
    three.reports.forEach((report, i) =>
      expect(Number(report.loss)).toBeCloseTo(Number(one.reports[i]?.loss ?? Number.NaN), 5),
    );
    // The same 3 ranks with per-rank statistics: the comparison above can fail.
    const local = await trainWorld(graphJob(RESIDUAL_BN, false), dataset, 3, steps);
    expect(relativeDistance(local.params, one.params)).toBeGreaterThan(100 * TOLERANCE);
  });
});

describe('what the pass cannot cut', () => {
  const job = (): Job =>
    resolveJob(
      { ...xorJob({}), model: { input: [2], layers: [{ type: 'dense', units: 2 }], syncBatchNorm: true } },
      'j',
    );

  it('refuses a BatchNorm inside a nested model with one line', () => {
    const inner = tf.sequential({
      layers: [tf.layers.dense({ inputShape: [2], units: 3 }), tf.layers.batchNormalization()],
    });
    const input = tf.input({ shape: [2] });
    const out = tf.layers.dense({ units: 2, activation: 'softmax' }).apply(inner.apply(input));
    const model = tf.model({ inputs: input, outputs: out as tf.SymbolicTensor });
    expect(() => new Replica(model, job())).toThrow(JobConfigError);
    expect(() => new Replica(model, job())).toThrow(
      /model\.syncBatchNorm: layer .* is a nested model holding BatchNorm/,
    );
    model.dispose();
  });

  it('refuses a layer applied at two places with one line', () => {
    const input = tf.input({ shape: [2] });
    const shared = tf.layers.dense({ units: 2, name: 'shared' });
    const first = shared.apply(input) as tf.SymbolicTensor;
    const norm = tf.layers.batchNormalization().apply(first) as tf.SymbolicTensor;
    const out = tf.layers.activation({ activation: 'softmax' }).apply(shared.apply(norm));
    const model = tf.model({ inputs: input, outputs: out as tf.SymbolicTensor });
    expect(() => new Replica(model, job())).toThrow(/model\.syncBatchNorm: layer shared is applied at 2 places/);
    model.dispose();
  });
});
