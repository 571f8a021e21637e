// Where a job's model comes from, and a digest of the files behind it.
//
//   model: { input, layers: [...] }                      YAML, a stack or a graph
//   model: { input, from: model.json, initialize? }      a saved TensorFlow.js layers model
//   model: { input, module: ./model.js }                 an ES module exporting createModel(tf, job)
//
// `from` and `module` name files that every worker reads at the same path (embedded workers share
// the coordinator's disk; in a cluster, mount them, e.g. from a ConfigMap). Their content is part
// of the job hash (shared/job.ts), so a worker whose file differs is refused like any job mismatch.
import { createHash } from 'node:crypto';
import { readFileSync, realpathSync } from 'node:fs';
import * as path from 'node:path';
import { describeReadFailure, JobConfigError } from './errors.js';
import type { Job } from './job-schema.js';

export type ModelSource = 'layers' | 'from' | 'module';

export function modelSourceOf(job: Job): ModelSource {
  if (job.model.from !== undefined) return 'from';
  if (job.model.module !== undefined) return 'module';
  return 'layers';
}

/** The files behind a `from` (model.json and its weight files) or `module` source; [] for layers. */
export function modelSourceFiles(job: Job): string[] {
  if (job.model.module !== undefined) return [job.model.module];
  if (job.model.from === undefined) return [];
  const modelJson = job.model.from;
  const manifest = (parseJson(modelJson) as { weightsManifest?: unknown }).weightsManifest;
  if (!Array.isArray(manifest))
    throw new JobConfigError(modelJson, [
      `model.from: ${modelJson} has no weightsManifest; is it a TensorFlow.js layers model.json?`,
    ]);
  const dir = path.dirname(modelJson);
  const weights = (manifest as Array<{ paths?: unknown }>).flatMap((group): unknown[] =>
    Array.isArray(group.paths) ? (group.paths as unknown[]) : [],
  );
  return [
    modelJson,
    ...weights.map((relative) => {
      if (typeof relative !== 'string' || path.isAbsolute(relative) || relative.split(/[\\/]/).includes('..'))
        throw new JobConfigError(modelJson, [
          `model.from: weights path ${JSON.stringify(relative)} is outside the model's folder`,
        ]);
      return path.join(dir, relative);
    }),
  ];
}

/** sha256 (hex, 16 chars) over the source files' bytes; '' for YAML layers. Reads the files. */
export function modelSourceDigest(job: Job): string {
  const files = modelSourceFiles(job);
  if (files.length === 0) return '';
  const hash = createHash('sha256');
  for (const file of files) hash.update(readOrThrow(file)).update('\0');
  return hash.digest('hex').slice(0, 16);
}

/** Resolves `from`/`module` against the job file's folder and checks that the files can be read. */
export function resolveModelPaths(job: Job, baseDir: string, source: string): void {
  // Symlinks are resolved now: `from: runs/latest/model/model.json` must name the run that was
  // latest when the job was read, not the new run the CLI points runs/latest at before training.
  if (job.model.from !== undefined) job.model.from = pinned(path.resolve(baseDir, job.model.from));
  if (job.model.module !== undefined) job.model.module = pinned(path.resolve(baseDir, job.model.module));
  try {
    modelSourceDigest(job);
  } catch (error) {
    if (error instanceof JobConfigError) throw new JobConfigError(source, error.problems, { cause: error });
    throw error;
  }
}

/** The file's real path when it exists (missing files are reported by the digest below). */
function pinned(file: string): string {
  try {
    return realpathSync(file);
  } catch {
    return file;
  }
}

function parseJson(file: string): unknown {
  try {
    return JSON.parse(readOrThrow(file).toString('utf8'));
  } catch (cause) {
    if (cause instanceof JobConfigError) throw cause;
    throw new JobConfigError(file, [`model.from: ${file} is not valid JSON`], { cause });
  }
}

function readOrThrow(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (cause) {
    throw new JobConfigError(file, [`model: ${file}: ${describeReadFailure(cause)}`], { cause });
  }
}
