// The dataset of a job: read the source, split it, lay labels out for the loss, standardise
// (csv), and fingerprint the result. Plain TypeScript (no TensorFlow), so the coordinator can
// validate a job and learn split sizes without loading a backend; workers load the same thing.
import { DatasetError } from '../errors.js';
import type { Job, LossName } from '../job-schema.js';
import { lossName } from '../loss-spec.js';
import { readCsv } from './csv-source.js';
import { hashSplits } from './data-hash.js';
import { readIdx } from './idx-source.js';
import { encodeLabels, labelLayout, type LabelLayout } from './labels.js';
import { readMnist } from './mnist-source.js';
import { fitColumns, standardize } from './normalization.js';
import { readImages } from './image-source.js';
import type { RawSamples, SourceColumns } from './raw-samples.js';
import { gatherRows, splitIndices } from './split.js';
import { readText } from './text-source.js';
import { makeXor } from './xor-source.js';

/** Row-major: x has count × featureSize floats, y has count × labelSize. Any split may be empty. */
export interface Split {
  x: Float32Array;
  y: Float32Array;
  count: number;
}

export type SplitName = 'train' | 'validation' | 'test';
export const SPLIT_NAMES: readonly SplitName[] = ['train', 'validation', 'test'];

export interface Normalization {
  featureMean: number[];
  featureStd: number[];
  labelMean?: number;
  labelStd?: number;
}

export interface Dataset {
  name: string;
  /** Per sample; always job.model.input. */
  inputShape: number[];
  /** Product of inputShape. */
  featureSize: number;
  /** Floats per label: classes (one-hot) for categorical, 1 for sparse/binary/regression. */
  labelSize: number;
  /** reconstruction: `data.target: input`, y is a copy of x (an autoencoder). */
  task: 'classification' | 'binary' | 'regression' | 'reconstruction';
  /** Classes of a classification or binary task (sparse labels hold an index below this). */
  numClasses?: number;
  /** Class i's name, where the source names classes (csv classification). */
  classNames?: string[];
  train: Split;
  validation: Split;
  test: Split;
  /** The source's columns (csv): features in input order, their encodings (strings, missing cells), the label. */
  columns?: SourceColumns;
  /** Token i's text (text sources); index 0 is the unknown/padding token. Exported with the model. */
  vocabulary?: string[];
  /** Feature/label normalisation fitted on the training split only (csv); built into the exported model (model-export.ts) so it predicts raw rows. */
  normalization?: Normalization;
  /** sha256 (hex, first 16 chars) over the three splits' bytes: workers must load the same data as the coordinator. */
  hash: string;
}

/** Loads and splits the dataset of a resolved job. Synchronous. Throws DatasetError for any problem. */
export function loadDataset(job: Job): Dataset {
  // Packed folders and data modules are read by offset, never whole: see data-source.ts.
  if (job.data.format === 'packed' || job.data.format === 'module')
    throw new DatasetError(
      job.data.path,
      `a ${job.data.format} source is opened with openDataSource, not loaded whole`,
    );
  const raw = readSource(job);
  const inputShape = [...job.model.input];
  const featureSize = inputShape.reduce((a, b) => a * b, 1);
  if (raw.featureSize !== featureSize) {
    throw new DatasetError(
      raw.file,
      `has ${raw.featureSize} features per sample, but model.input [${inputShape.join(', ')}] holds ${featureSize}; use an input shape whose product is ${raw.featureSize}`,
    );
  }
  const targetsInput = 'target' in job.data && job.data.target === 'input';
  const layout = targetsInput
    ? inputTargetLayout(featureSize, lossName(job.loss), raw.file)
    : labelLayout(raw.target, lossName(job.loss), raw.file);
  const indices = splitIndices(raw.count, job.data.split, job.seed);
  if (indices.train.length === 0) {
    throw new DatasetError(
      raw.file,
      `${raw.count} samples leave none for training after the validation/test split; lower data.split`,
    );
  }
  const build = (rows: Uint32Array): Split => ({
    x: gatherRows(raw.x, raw.featureSize, rows),
    y: targetsInput ? new Float32Array(0) : encodeLabels(raw.target, layout, rows),
    count: rows.length,
  });
  const splits = { train: build(indices.train), validation: build(indices.validation), test: build(indices.test) };
  const normalize = job.data.format === 'csv' && job.data.normalize;
  const normalization = normalize
    ? normalizeSplits(splits, featureSize, layout.task === 'regression' && !targetsInput)
    : undefined;
  // An autoencoder's target is its (standardised, for csv) input.
  if (targetsInput) for (const split of Object.values(splits)) split.y = split.x.slice();
  const classNames = raw.target.kind === 'classes' ? raw.target.classNames : undefined;
  return {
    name: 'path' in job.data ? `${job.data.format}:${job.data.path}` : job.data.format,
    inputShape,
    featureSize,
    labelSize: layout.labelSize,
    task: targetsInput ? 'reconstruction' : layout.task,
    ...(layout.numClasses === undefined ? {} : { numClasses: layout.numClasses }),
    ...(classNames === undefined ? {} : { classNames }),
    ...(raw.columns === undefined ? {} : { columns: raw.columns }),
    ...(raw.vocabulary === undefined ? {} : { vocabulary: raw.vocabulary }),
    ...splits,
    ...(normalization === undefined ? {} : { normalization }),
    hash: hashSplits([splits.train, splits.validation, splits.test]),
  };
}

function readSource(job: Job): RawSamples {
  const data = job.data;
  switch (data.format) {
    case 'mnist':
      return readMnist(data.limit);
    case 'csv':
      return readCsv(data, job.seed);
    case 'idx':
      return readIdx(data);
    case 'xor':
      return makeXor(data, job.seed);
    case 'images':
      return readImages(data);
    case 'text':
      return readText(data);
    case 'packed':
    case 'module':
      throw new DatasetError(data.path, `a ${data.format} source has no raw samples`);
  }
}

/** `data.target: input`: y is x itself, so the model's output is as wide as its input. */
function inputTargetLayout(featureSize: number, loss: LossName, file: string): LabelLayout {
  if (loss !== 'meanSquaredError' && loss !== 'binaryCrossentropy') {
    throw new DatasetError(
      file,
      `target: input (an autoencoder) needs loss meanSquaredError or binaryCrossentropy, not ${loss}`,
    );
  }
  return { task: 'regression', labelSize: featureSize, outputUnits: featureSize, oneHot: false };
}

/** Fits on train, applies to every split in place; the (single) label column too when `fitLabel`. */
function normalizeSplits(splits: Record<SplitName, Split>, featureSize: number, fitLabel: boolean): Normalization {
  const features = fitColumns(splits.train.x, featureSize);
  for (const split of Object.values(splits)) standardize(split.x, featureSize, features);
  if (!fitLabel) return { featureMean: features.mean, featureStd: features.std };
  const label = fitColumns(splits.train.y, 1);
  for (const split of Object.values(splits)) standardize(split.y, 1, label);
  return {
    featureMean: features.mean,
    featureStd: features.std,
    labelMean: label.mean[0] ?? 0,
    labelStd: label.std[0] ?? 1,
  };
}

export function splitOf(ds: Dataset, name: SplitName): Split {
  return ds[name];
}

/** One line for logs: "mnist: 8000 train / 1000 validation / 1000 test, input [784], 10 classes one-hot, hash 1a2b...". */
export function datasetSummary(ds: Omit<Dataset, SplitName> & Record<SplitName, { count: number }>): string {
  const labels =
    ds.task === 'reconstruction'
      ? 'target = input'
      : ds.task === 'regression'
        ? `regression${ds.normalization?.labelMean === undefined ? '' : ' (normalised labels)'}`
        : ds.task === 'binary'
          ? 'binary 0/1'
          : `${ds.numClasses ?? ds.labelSize} classes ${ds.labelSize === 1 ? 'sparse' : 'one-hot'}`;
  const counts = `${ds.train.count} train / ${ds.validation.count} validation / ${ds.test.count} test`;
  return `${ds.name}: ${counts}, input [${ds.inputShape.join(', ')}], ${labels}${ds.normalization ? ', standardised features' : ''}, hash ${ds.hash}`;
}
