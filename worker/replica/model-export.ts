// The model in TensorFlow.js layers format (model.json + weights.bin), produced in memory and
// loaded back from a folder, without @tensorflow/tfjs-node's file:// handlers.
//
// The exported topology uses built-in layers only (input normalization is a Rescaling layer,
// see model-builder.ts; a data set's standardisation is added by deployable-model.ts), so any
// TensorFlow.js runtime can load it with tf.loadLayersModel.
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { CheckpointError, errnoCode } from '../../shared/errors.js';

/** model.json as written: metadata values may be anything JSON can hold, null included. */
type ExportedModelJson = Omit<tf.io.ModelJSON, 'userDefinedMetadata'> & {
  userDefinedMetadata?: Record<string, unknown>;
};

/** Name of the single weights file referenced by model.json. */
export const WEIGHTS_FILE = 'weights.bin';
export const MODEL_JSON_FILE = 'model.json';

/**
 * model.json (modelTopology, format 'layers-model', weightsManifest → weights.bin) and the weight
 * bytes. `extra` (e.g. normalization, classNames; JSON-serialisable) is stored as
 * model.json's userDefinedMetadata.
 */
export async function exportModel(
  model: tf.LayersModel,
  extra?: Record<string, unknown>,
): Promise<{ modelJson: string; weights: Uint8Array }> {
  const captured = await captureArtifacts(model);
  const json: ExportedModelJson = {
    modelTopology: captured.modelTopology ?? {},
    format: 'layers-model',
    generatedBy: captured.generatedBy ?? `TensorFlow.js tfjs-layers v${tf.version_layers}`,
    convertedBy: null,
    weightsManifest: [{ paths: [WEIGHTS_FILE], weights: captured.weightSpecs ?? [] }],
  };
  if (extra !== undefined) json.userDefinedMetadata = extra;
  const bytes =
    captured.weightData === undefined ? new ArrayBuffer(0) : tf.io.concatenateArrayBuffers(captured.weightData);
  return { modelJson: JSON.stringify(json), weights: new Uint8Array(bytes) };
}

/** What model.save hands a save handler: topology, weight specs and weight bytes, in memory. */
export async function captureArtifacts(model: tf.LayersModel): Promise<tf.io.ModelArtifacts> {
  let captured: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler((artifacts) => {
      captured = artifacts;
      return Promise.resolve({ modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) });
    }),
  );
  if (captured === undefined) throw new Error('exportModel: model.save did not hand over any artifacts');
  return captured;
}

/** Loads model.json and the weight files it names from `dir` with tf.loadLayersModel. */
export async function loadModelFromDir(dir: string): Promise<tf.LayersModel> {
  return loadModelFile(path.join(dir, MODEL_JSON_FILE));
}

/** Loads a model.json (any name) and the weight files it names, which must sit in its folder. */
export async function loadModelFile(modelJsonPath: string): Promise<tf.LayersModel> {
  const dir = path.dirname(modelJsonPath);
  const modelJson = parseModelJson(await readOrThrow(modelJsonPath, dir), modelJsonPath);
  const handler: tf.io.IOHandler = {
    load: () => tf.io.getModelArtifactsForJSON(modelJson, (manifest) => readWeights(dir, manifest)),
  };
  return tf.loadLayersModel(handler);
}

/** Every weights file of every group, in manifest order, as one buffer. */
async function readWeights(
  dir: string,
  manifest: tf.io.WeightsManifestConfig,
): Promise<[tf.io.WeightsManifestEntry[], ArrayBuffer]> {
  const specs: tf.io.WeightsManifestEntry[] = [];
  const buffers: ArrayBuffer[] = [];
  for (const group of manifest) {
    specs.push(...group.weights);
    for (const relative of group.paths) {
      // model.json may come from elsewhere: only files inside `dir` are read.
      if (path.isAbsolute(relative) || relative.split(/[\\/]/).includes('..')) {
        throw new CheckpointError(dir, `model.json names weights file "${relative}" outside the model folder`);
      }
      const bytes = await readOrThrow(path.join(dir, relative), dir);
      buffers.push(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
    }
  }
  return [specs, tf.io.concatenateArrayBuffers(buffers)];
}

async function readOrThrow(file: string, dir: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (cause) {
    throw new CheckpointError(dir, `cannot read ${path.basename(file)} (${errnoCode(cause) ?? String(cause)})`, {
      cause,
    });
  }
}

function parseModelJson(bytes: Buffer, file: string): tf.io.ModelJSON {
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch (cause) {
    throw new CheckpointError(file, 'model.json is not valid JSON', { cause });
  }
  const candidate = parsed as Partial<tf.io.ModelJSON> | null;
  if (
    candidate === null ||
    typeof candidate !== 'object' ||
    candidate.modelTopology === undefined ||
    !Array.isArray(candidate.weightsManifest)
  ) {
    throw new CheckpointError(
      file,
      'model.json lacks modelTopology or weightsManifest; is this a TensorFlow.js layers model?',
    );
  }
  return candidate as tf.io.ModelJSON;
}
