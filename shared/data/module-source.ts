// `data: { format: module, path: ./data.js }`: a user's ES module exporting
// `createDataset(job)` (sync or async), which returns
//   { count, inputShape, labelSize, task?, numClasses?, classNames?, hash?, fill(indices, x, y) }
// where fill writes sample indices[i] (0 <= index < count) into x at i × featureSize and its
// label (laid out for the job's loss) into y at i × labelSize. ringtrain splits the samples by
// the job's `data.split` and seed, as for every format. Only a local file named in the job is
// loaded (its path resolves against the job file's folder).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { DatasetError, describeError, describeReadFailure } from '../errors.js';
import type { Job } from '../job-schema.js';
import type { SplitName } from './dataset.js';
import type { DataSource } from './data-source.js';
import { splitIndices } from './split.js';

const declaredSchema = z.object({
  count: z.number().int().positive(),
  inputShape: z.array(z.number().int().positive()).min(1),
  labelSize: z.number().int().nonnegative(),
  task: z.enum(['classification', 'binary', 'regression']).optional(),
  numClasses: z.number().int().positive().optional(),
  classNames: z.array(z.string()).optional(),
  hash: z.string().min(1).optional(),
  fill: z.custom<(indices: Uint32Array, x: Float32Array, y: Float32Array) => void>(
    (v) => typeof v === 'function',
    'must be a function (indices, x, y) => void',
  ),
});

/** Imports the job's data module and wraps what its createDataset returns. */
export async function openModuleSource(job: Job): Promise<DataSource> {
  if (job.data.format !== 'module') throw new TypeError('openModuleSource needs a module job');
  const file = job.data.path;
  let code: Buffer;
  try {
    code = readFileSync(file);
  } catch (cause) {
    throw new DatasetError(file, `data module: ${describeReadFailure(cause)}`, undefined, { cause });
  }
  let exported: { createDataset?: unknown };
  try {
    exported = (await import(pathToFileURL(file).href)) as { createDataset?: unknown };
  } catch (cause) {
    throw new DatasetError(file, `data module failed to load: ${describeError(cause)}`, undefined, { cause });
  }
  if (typeof exported.createDataset !== 'function')
    throw new DatasetError(file, 'data module must export a function createDataset(job)');
  let made: unknown;
  try {
    made = await (exported.createDataset as (job: Job) => unknown)(structuredClone(job));
  } catch (cause) {
    throw new DatasetError(file, `data module's createDataset threw: ${describeError(cause)}`, undefined, { cause });
  }
  const parsed = declaredSchema.safeParse(made);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue === undefined ? '' : `${issue.path.map(String).join('.') || '(result)'}: ${issue.message}`;
    throw new DatasetError(
      file,
      `data module's createDataset returned a bad dataset (${where}); see README "Data modules"`,
    );
  }
  const declared = parsed.data;
  const wanted = job.model.input;
  if (declared.inputShape.length !== wanted.length || declared.inputShape.some((d, i) => d !== wanted[i]))
    throw new DatasetError(
      file,
      `data module's samples have shape [${declared.inputShape.join(', ')}], but model.input is [${wanted.join(', ')}]; make them agree`,
    );
  const featureSize = declared.inputShape.reduce((a, b) => a * b, 1);
  const splits = splitIndices(declared.count, job.data.split, job.seed);
  if (splits.train.length === 0)
    throw new DatasetError(file, `${declared.count} samples leave none for training after the split; lower data.split`);
  const hash =
    declared.hash ??
    createHash('sha256')
      .update(code)
      .update(JSON.stringify({ data: job.data, seed: job.seed }))
      .digest('hex')
      .slice(0, 16);
  // Split-local indices mapped to the module's own numbering, reused from one fill to the next.
  let scratch = new Uint32Array(0);
  return {
    name: `module:${file}`,
    inputShape: [...declared.inputShape],
    featureSize,
    labelSize: declared.labelSize,
    task: declared.task ?? (declared.labelSize === 1 ? 'regression' : 'classification'),
    ...(declared.numClasses === undefined ? {} : { numClasses: declared.numClasses }),
    ...(declared.classNames === undefined ? {} : { classNames: declared.classNames }),
    hash,
    train: { count: splits.train.length },
    validation: { count: splits.validation.length },
    test: { count: splits.test.length },
    fill: (split: SplitName, indices: Uint32Array, x: Float32Array, y: Float32Array) => {
      const rows = splits[split];
      if (scratch.length < indices.length) scratch = new Uint32Array(indices.length);
      const mapped = scratch.subarray(0, indices.length);
      for (let i = 0; i < indices.length; i++) {
        const row = indices[i] ?? 0;
        if (row >= rows.length)
          throw new RangeError(`sample index ${row} is outside the split (${rows.length} samples)`);
        mapped[i] = rows[row] ?? 0;
      }
      try {
        declared.fill(
          mapped,
          x.subarray(0, indices.length * featureSize),
          y.subarray(0, indices.length * declared.labelSize),
        );
      } catch (cause) {
        throw new DatasetError(
          file,
          `data module's fill threw for samples ${describeIndices(mapped)}: ${describeError(cause)}`,
          undefined,
          { cause },
        );
      }
    },
  };
}

function describeIndices(indices: Uint32Array): string {
  const head = Array.from(indices.subarray(0, 4)).join(', ');
  return indices.length > 4 ? `[${head}, ... (${indices.length})]` : `[${head}]`;
}
