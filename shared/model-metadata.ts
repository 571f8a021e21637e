// What an exported model says about itself, in model.json's userDefinedMetadata.ringtrain: enough
// for `predict`, `evaluate` and loadModel to read a data file the way training did (columns,
// class names, loss, metrics) without the run's job.yaml.
//
// Invariants:
// - The model itself takes RAW features and gives outputs in the label's own units: any
//   standardisation is a layer inside it. `normalization` is recorded for reference only; a reader
//   must not apply it again.
// - classNames[i] names output unit i (binary: [negative, positive] for the one sigmoid unit).
import { z } from 'zod';
import { LOSSES, METRICS } from './job-schema.js';

/** Key under model.json's userDefinedMetadata. */
export const MODEL_METADATA_KEY = 'ringtrain';

const normalizationSchema = z.object({
  featureMean: z.array(z.number()),
  featureStd: z.array(z.number()),
  labelMean: z.number().optional(),
  labelStd: z.number().optional(),
});

const columnEncodingSchema = z.union([
  z.object({ column: z.string(), kind: z.literal('number'), fill: z.number().optional() }),
  z.object({
    column: z.string(),
    kind: z.enum(['onehot', 'index']),
    categories: z.array(z.string()).min(1),
    fill: z.string().optional(),
  }),
]);

export const modelMetadataSchema = z.object({
  /** Bumped when a reader could misread an older layout. */
  version: z.literal(1),
  /** Per-sample input shape (job.model.input). */
  inputShape: z.array(z.number().int().positive()),
  task: z.enum(['classification', 'binary', 'regression', 'reconstruction']),
  /** The loss's name; on probabilities (a loss `fromLogits` was trained on logits, but the export appends softmax/sigmoid). */
  loss: z.enum(LOSSES),
  fromLogits: z.boolean().optional(),
  metrics: z.array(z.enum(METRICS)),
  /** How labels are laid out for the loss: one-hot, a class index (sparse), or the value itself. */
  labelEncoding: z.enum(['oneHot', 'sparse', 'value']),
  numClasses: z.number().int().positive().optional(),
  classNames: z.array(z.string()).optional(),
  /** csv: the feature columns, in the order the model's input takes them, and the label column. */
  featureColumns: z.array(z.string()).optional(),
  /**
   * csv with string columns or `missing: mean`: how each feature column (featureColumns[i]) becomes
   * input features (shared/data/column-encoding.ts): the categories of a one-hot or index column,
   * and the fill of an empty cell. Absent: every feature column is one number, and never empty.
   */
  featureEncodings: z.array(columnEncodingSchema).optional(),
  /** csv: columns of the training file that are not features (an ID): allowed, and skipped, in a file to predict. */
  ignoredColumns: z.array(z.string()).optional(),
  /** text: token i's text (index 0 the unknown/padding token), and how text was split into tokens. */
  vocabulary: z.array(z.string()).optional(),
  tokens: z.enum(['chars', 'words']).optional(),
  labelColumn: z.string().optional(),
  delimiter: z.string().optional(),
  /** The standardisation built into the model's first (and last) layers; for reference only. */
  normalization: normalizationSchema.optional(),
});

export type ModelMetadata = z.infer<typeof modelMetadataSchema>;
