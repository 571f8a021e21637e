// Export to TensorFlow.js layers format and load back from a folder: same predictions.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CheckpointError } from '../../shared/errors.js';
import { DEFAULT_JOB, resolveJob } from '../../shared/job.js';
import type { Job } from '../../shared/job-schema.js';
import { Rng } from '../../shared/rng.js';
import { selectBackend } from '../../worker/backend/backend.js';
import { buildModel } from '../../worker/replica/model-builder.js';
import { exportModel, loadModelFromDir } from '../../worker/replica/model-export.js';
import { Replica } from '../../worker/replica/replica.js';

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'ringtrain-export-'));
  dirs.push(dir);
  return dir;
}

/** A small CNN that uses every stateful layer kind: normalization, conv, BatchNorm, dropout. */
function cnnJob(): Job {
  return resolveJob(
    {
      ...structuredClone(DEFAULT_JOB),
      model: {
        input: [36],
        layers: [
          { type: 'normalization', mean: 0.2, std: 0.5 },
          { type: 'reshape', targetShape: [6, 6, 1] },
          { type: 'conv2d', filters: 3, kernelSize: 3, activation: 'leakyRelu' },
          { type: 'batchNormalization' },
          { type: 'maxPooling2d', poolSize: 2 },
          { type: 'flatten' },
          { type: 'dropout', rate: 0.4 },
          { type: 'dense', units: 4, activation: 'softmax' },
        ],
      },
    },
    'test job',
  );
}

function randomInputs(count: number, size: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: count * size }, () => rng.next());
}

async function writeExport(model: tf.LayersModel, extra?: Record<string, unknown>): Promise<string> {
  const dir = tempDir();
  const { modelJson, weights } = await exportModel(model, extra);
  writeFileSync(path.join(dir, 'model.json'), modelJson);
  writeFileSync(path.join(dir, 'weights.bin'), weights);
  return dir;
}

beforeAll(async () => {
  await selectBackend('cpu');
});

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('exportModel / loadModelFromDir', () => {
  it('round-trips a trained CNN: same predictions on raw inputs, metadata kept', async () => {
    const job = cnnJob();
    const replica = new Replica(buildModel(job), job);
    // One step moves the weights and BatchNorm's moving statistics away from their initial values.
    const x = randomInputs(8, 36, 1);
    const y = new Float32Array(8 * 4).map((_, i) => (i % 5 === 0 ? 1 : 0));
    const grad = new Float32Array(replica.paramCount);
    replica.computeGradients(
      x,
      y,
      8,
      0,
      Uint32Array.from({ length: 8 }, (_, i) => i),
      grad,
    );
    const params = new Float32Array(replica.paramCount);
    replica.readParams(params);
    replica.writeParams(params.map((p, i) => p - 0.1 * (grad[i] as number)));

    const dir = await writeExport(replica.model, { normalization: { mean: [0.2] }, classNames: null });
    const loaded = await loadModelFromDir(dir);
    const probe = randomInputs(5, 36, 2);
    const expected = tf.tidy(() => (replica.model.predict(tf.tensor2d(probe, [5, 36])) as tf.Tensor).dataSync());
    const actual = tf.tidy(() => (loaded.predict(tf.tensor2d(probe, [5, 36])) as tf.Tensor).dataSync());
    expect(actual).toEqual(expected);
    expect(loaded.countParams()).toBe(replica.model.countParams());

    const { modelJson, weights } = await exportModel(loaded);
    const json = JSON.parse(modelJson) as { format: string; weightsManifest: { paths: string[] }[] };
    expect(json.format).toBe('layers-model');
    expect(json.weightsManifest.map((g) => g.paths)).toEqual([['weights.bin']]);
    expect(weights.byteLength).toBe(4 * replica.model.countParams());
    const original = JSON.parse((await exportModel(replica.model, { classNames: ['a'] })).modelJson) as {
      userDefinedMetadata: unknown;
    };
    expect(original.userDefinedMetadata).toEqual({ classNames: ['a'] });
    loaded.dispose();
    replica.dispose();
  });

  it('refuses a folder without weights and weights outside the folder', async () => {
    const model = buildModel(resolveJob(structuredClone(DEFAULT_JOB), 'default job'));
    const dir = await writeExport(model);
    rmSync(path.join(dir, 'weights.bin'));
    await expect(loadModelFromDir(dir)).rejects.toBeInstanceOf(CheckpointError);

    const { modelJson } = await exportModel(model);
    const escaping = JSON.parse(modelJson) as { weightsManifest: { paths: string[] }[] };
    for (const group of escaping.weightsManifest) group.paths = ['../weights.bin'];
    writeFileSync(path.join(dir, 'model.json'), JSON.stringify(escaping));
    await expect(loadModelFromDir(dir)).rejects.toThrow(/outside the model folder/);
    await expect(loadModelFromDir(path.join(dir, 'missing'))).rejects.toBeInstanceOf(CheckpointError);
    model.dispose();
  });
});
