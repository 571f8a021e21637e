// loadModel: an exported ringtrain model (a run folder or its model/ folder) as a tf.LayersModel
// plus what it says about itself. The model takes raw features and answers in the label's own
// units (see worker/replica/deployable-model.ts): callers apply no scaling of their own.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import { CheckpointError, ModelLoadError } from '../shared/errors.js';
import { MODEL_METADATA_KEY, modelMetadataSchema, type ModelMetadata } from '../shared/model-metadata.js';
import { loadModelFromDir, MODEL_JSON_FILE } from '../worker/replica/model-export.js';

export type { ModelMetadata } from '../shared/model-metadata.js';

export interface LoadedModel {
  model: tf.LayersModel;
  metadata: ModelMetadata;
  /** The folder model.json was read from. */
  dir: string;
}

/**
 * Loads `dir`: a model folder (model.json + weights.bin) or a run folder (its model/). Rejects
 * with ModelLoadError (exit 10) when there is no model, it is unreadable, or it was not exported
 * by this version of ringtrain (no metadata). The caller owns the model: dispose() it when done.
 */
export async function loadModel(dir: string): Promise<LoadedModel> {
  const modelDir = resolveModelDir(dir);
  const metadata = await readMetadata(modelDir);
  try {
    return { model: await loadModelFromDir(modelDir), metadata, dir: modelDir };
  } catch (error) {
    if (error instanceof CheckpointError)
      throw new ModelLoadError(dir, error.message.replace(/^checkpoint [^:]*: /, ''), { cause: error });
    throw new ModelLoadError(dir, `TensorFlow.js cannot load it (${String(error)})`, { cause: error });
  }
}

/** A run folder's model/, or `dir` itself when it holds model.json. */
export function resolveModelDir(dir: string): string {
  if (existsSync(path.join(dir, MODEL_JSON_FILE))) return dir;
  const inRun = path.join(dir, 'model');
  if (existsSync(path.join(inRun, MODEL_JSON_FILE))) return inRun;
  if (!existsSync(dir)) throw new ModelLoadError(dir, 'no such folder; pass a run folder (runs/<name>) or its model/');
  throw new ModelLoadError(
    dir,
    existsSync(path.join(dir, 'job.yaml'))
      ? 'the run has no model/ yet (it has not finished); wait for it or resume it'
      : 'holds no model.json; pass a run folder (runs/<name>) or its model/',
  );
}

/** userDefinedMetadata.ringtrain of model.json, validated. */
export async function readMetadata(modelDir: string): Promise<ModelMetadata> {
  const file = path.join(modelDir, MODEL_JSON_FILE);
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(file, 'utf8'));
  } catch (cause) {
    throw new ModelLoadError(modelDir, `cannot read ${MODEL_JSON_FILE} as JSON (${String(cause)})`, { cause });
  }
  const metadata = (parsed as { userDefinedMetadata?: Record<string, unknown> } | null)?.userDefinedMetadata?.[
    MODEL_METADATA_KEY
  ];
  const result = modelMetadataSchema.safeParse(metadata);
  if (!result.success)
    throw new ModelLoadError(
      modelDir,
      `${MODEL_JSON_FILE} has no valid userDefinedMetadata.${MODEL_METADATA_KEY} (exported by an older ringtrain?); export it again with this version`,
    );
  return result.data;
}
