// The job's model from its source (shared/model-source.ts): YAML layers, a saved TensorFlow.js
// layers model (`from`), or an ES module's createModel(tf, job) (`module`). Every worker and the
// coordinator's probe build it here, the same way.
//
// Identical initial weights on every rank: YAML and `from ... fresh` are seeded by job.seed;
// `from` (pretrained) loads the same bytes (their digest is in the job hash); a module's
// initialisers draw from Math.random when unseeded (tf.js's do), so createModel runs with
// Math.random replaced by a stream seeded by job.seed, and the coordinator still broadcasts
// rank 0's initial state to every rank (coordinator/loop/resume-state.ts) for any randomness
// that escapes it.
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { describeError, JobConfigError } from '../../shared/errors.js';
import type { Job } from '../../shared/job-schema.js';
import { Rng, seedFrom } from '../../shared/rng.js';
import { initialiseFresh } from './fresh-init.js';
import { buildModel } from './model-builder.js';
import { loadModelFile } from './model-export.js';

/** Stream tag for the Math.random stand-in during createModel ("modl"). */
const MODULE_STREAM = 0x6d6f646c;

/** Builds or loads the job's model. Throws JobConfigError (one line) for a source that does not give one. */
export async function createJobModel(job: Job): Promise<tf.LayersModel> {
  if (job.model.from !== undefined) return loadSaved(job, job.model.from);
  if (job.model.module !== undefined) return fromModule(job, job.model.module);
  return buildModel(job);
}

async function loadSaved(job: Job, file: string): Promise<tf.LayersModel> {
  let model: tf.LayersModel;
  try {
    model = await loadModelFile(file);
  } catch (cause) {
    throw new JobConfigError(
      file,
      [`model.from: cannot load it as a TensorFlow.js layers model: ${firstLine(cause)}`],
      {
        cause,
      },
    );
  }
  if (job.model.initialize === 'fresh') initialiseFresh(model, job.seed, file);
  return model;
}

async function fromModule(job: Job, file: string): Promise<tf.LayersModel> {
  let exported: { createModel?: unknown };
  try {
    exported = (await import(pathToFileURL(file).href)) as { createModel?: unknown };
  } catch (cause) {
    throw new JobConfigError(file, [`model.module: cannot import it: ${firstLine(cause)}`], { cause });
  }
  const createModel = exported.createModel;
  if (typeof createModel !== 'function')
    throw new JobConfigError(file, ['model.module: exports no function createModel(tf, job)']);
  const model: unknown = await withSeededMathRandom(job.seed, async () => {
    try {
      return await (createModel as (t: typeof tf, j: Job) => unknown)(tf, structuredClone(job));
    } catch (cause) {
      throw new JobConfigError(file, [`model.module: createModel threw: ${firstLine(cause)}`], { cause });
    }
  });
  if (!(model instanceof tf.LayersModel))
    throw new JobConfigError(file, [
      'model.module: createModel must return a tf.LayersModel (tf.sequential() or tf.model()) built with the tf it receives',
    ]);
  return model;
}

/** Runs `fn` with Math.random drawing from Rng(seedFrom(seed, MODULE_STREAM)); restores it after. */
async function withSeededMathRandom<T>(seed: number, fn: () => Promise<T>): Promise<T> {
  const original = Math.random;
  const rng = new Rng(seedFrom(seed, MODULE_STREAM));
  Math.random = () => rng.next();
  try {
    return await fn();
  } finally {
    Math.random = original;
  }
}

function firstLine(error: unknown): string {
  return describeError(error).split('\n')[0] ?? '';
}
