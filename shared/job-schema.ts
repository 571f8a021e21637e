// The job file's schema: every key, its meaning and its default, in one place.
// Unknown keys are rejected everywhere (strict objects), so a typo is an error, not a no-op.
import { z } from 'zod';
import { httpAddressSchema } from './http-address.js';
import { layerSchema } from './layer-schema.js';

export { ACTIVATIONS, activationSchema, layerSchema, type Activation, type LayerSpec } from './layer-schema.js';

const positiveInt = z.number().int().positive();
const nonNegativeInt = z.number().int().nonnegative();
const fraction = z.number().min(0).max(1);

const splitSchema = z
  .strictObject({
    /** Fraction of the samples held out for validation. @default 0.1 */
    validation: fraction.default(0.1),
    /** Fraction of the samples held out for the final test. @default 0.1 */
    test: fraction.default(0.1),
  })
  .refine((s) => s.validation + s.test < 1, { message: 'validation + test must leave some training samples (< 1)' });

const defaultSplit = { validation: 0.1, test: 0.1 };

/**
 * What the model learns to output: the source's labels, or its own input (an autoencoder; the
 * labels are ignored and the loss must be meanSquaredError or binaryCrossentropy). @default 'label'
 */
const targetSchema = z.enum(['label', 'input']).default('label');

export const dataSchema = z.discriminatedUnion('format', [
  z.strictObject({
    format: z.literal('mnist'),
    /** Use only the first N digits of the 10,000 shipped by the `mnist` package. @default all */
    limit: positiveInt.max(10_000).optional(),
    split: splitSchema.default(defaultSplit),
    target: targetSchema,
  }),
  z.strictObject({
    format: z.literal('csv'),
    /** CSV file with a header row; relative paths resolve against the job file's folder. */
    path: z.string().min(1),
    /** Name of the label column. */
    label: z.string().min(1),
    task: z.enum(['classification', 'regression']),
    delimiter: z.string().length(1).default(','),
    /** Standardise features with mean/std fitted on the training split. @default true */
    normalize: z.boolean().default(true),
    /** The feature columns, in the model's input order. @default every column but the label and `ignore` */
    features: z.array(z.string().min(1)).min(1).optional(),
    /** Columns to leave out (an ID, free text). @default none */
    ignore: z.array(z.string().min(1)).default([]),
    /**
     * How a column of strings becomes numbers: `onehot` (one 0/1 feature per category) or `index`
     * (one feature, the category's index in the sorted vocabulary). @default onehot for every string column
     */
    encode: z.record(z.string(), z.enum(['onehot', 'index'])).default({}),
    /**
     * An empty cell in a feature column: `error` (names file, line and column), `drop` the row, or
     * `mean`: the training rows' mean (a string column: its most frequent category). A missing label
     * is always an error. @default 'error'
     */
    missing: z.enum(['error', 'drop', 'mean']).default('error'),
    split: splitSchema.default(defaultSplit),
    target: targetSchema,
  }),
  z.strictObject({
    format: z.literal('images'),
    /** Folder of class folders: DIR/<class>/*.png|jpg; classes are the folder names, sorted. */
    path: z.string().min(1),
    /** [height, width, channels]: every image is resized to it; channels 1 = grayscale, 3 = RGB. */
    shape: z.tuple([positiveInt.max(4096), positiveInt.max(4096), z.union([z.literal(1), z.literal(3)])]),
    split: splitSchema.default(defaultSplit),
    target: targetSchema,
  }),
  z.strictObject({
    format: z.literal('text'),
    /**
     * A UTF-8 text file, or a folder: its *.txt files (in name order) for a language model, or
     * DIR/<label>/*.txt for classification (`task`).
     */
    path: z.string().min(1),
    /** Split into characters, or into words (runs of letters/digits, and each other non-space character). */
    tokens: z.enum(['chars', 'words']),
    /** Tokens per sample: the model's input is [window] token indices. */
    window: positiveInt.max(65_536),
    /**
     * `nextToken`: every window of `window` tokens (every `stride` tokens) is a sample whose label
     * is the token after it. `classification`: DIR/<label>/*.txt, each file cut into windows (the
     * last one padded with token 0), each labelled by its folder. @default 'nextToken'
     */
    task: z.enum(['nextToken', 'classification']).default('nextToken'),
    /** Keep the K most frequent tokens (ties by first appearance); the rest map to the unknown token. @default all */
    vocabularySize: positiveInt.max(1_000_000).optional(),
    /** Tokens between the starts of consecutive windows. @default 1 for nextToken, `window` for classification */
    stride: positiveInt.optional(),
    split: splitSchema.default(defaultSplit),
  }),
  z.strictObject({
    format: z.literal('idx'),
    /** `*-images-idx3-ubyte[.gz]` file. */
    images: z.string().min(1),
    /** `*-labels-idx1-ubyte[.gz]` file. */
    labels: z.string().min(1),
    limit: positiveInt.optional(),
    split: splitSchema.default(defaultSplit),
    target: targetSchema,
  }),
  z.strictObject({
    format: z.literal('packed'),
    /** Folder written by `ringtrain pack` (manifest.json + shards); relative to the job file's folder. */
    path: z.string().min(1),
    /**
     * How a shard is checked the first time a process opens it: `size` (its length only) or
     * `checksum` (also its sha256 from the manifest; reads the whole shard once). @default 'checksum'
     */
    verify: z.enum(['size', 'checksum']).default('checksum'),
  }),
  z.strictObject({
    format: z.literal('module'),
    /** ES module exporting `createDataset(job)` (see README "Data modules"); relative to the job file's folder. */
    path: z.string().min(1),
    split: splitSchema.default(defaultSplit),
  }),
  z.strictObject({
    format: z.literal('xor'),
    /** Number of samples; each is one of the four XOR corners plus optional noise. @default 4 */
    samples: positiveInt.default(4),
    noise: z.number().nonnegative().default(0),
    split: splitSchema.default({ validation: 0, test: 0 }),
  }),
]);

export const LOSSES = [
  'meanSquaredError',
  'binaryCrossentropy',
  'categoricalCrossentropy',
  'sparseCategoricalCrossentropy',
] as const;
export const METRICS = ['accuracy', 'binaryAccuracy', 'mae', 'mse'] as const;

const optimizerCommon = {
  learningRate: z.number().positive(),
  /**
   * Weight decay coefficient wd. For sgd, momentum and nesterov it is coupled L2: wd·p is added to
   * the gradient before the update (torch.optim.SGD). For adam only it is decoupled (AdamW):
   * p -= lr·wd·p, apart from the adaptive step. @default 0
   */
  weightDecay: z.number().nonnegative().default(0),
  /** Clip the averaged gradient to this global L2 norm; 0 disables. @default 0 */
  clipNorm: z.number().nonnegative().default(0),
};

export const optimizerSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('sgd'),
    ...optimizerCommon,
    momentum: z.number().min(0).lt(1).default(0),
    nesterov: z.boolean().default(false),
  }),
  z.strictObject({
    type: z.literal('momentum'),
    ...optimizerCommon,
    momentum: z.number().min(0).lt(1).default(0.9),
    nesterov: z.boolean().default(false),
  }),
  z.strictObject({ type: z.literal('nesterov'), ...optimizerCommon, momentum: z.number().min(0).lt(1).default(0.9) }),
  z.strictObject({
    type: z.literal('adam'),
    ...optimizerCommon,
    beta1: z.number().min(0).lt(1).default(0.9),
    beta2: z.number().min(0).lt(1).default(0.999),
    epsilon: z.number().positive().default(1e-8),
  }),
]);

export const scheduleSchema = z.strictObject({
  type: z.enum(['constant', 'step', 'cosine']).default('constant'),
  /**
   * Linear warm-up over this many steps: step s (0-based) trains at lr·(s+1)/warmupSteps, so the
   * first step already uses lr/warmupSteps (never 0) and step warmupSteps−1 the full lr. @default 0
   */
  warmupSteps: nonNegativeInt.default(0),
  /** step: multiply by `gamma` every `stepSize` steps. */
  stepSize: positiveInt.default(1000),
  gamma: z.number().positive().default(0.1),
  /** cosine: floor of the decayed learning rate. @default 0 */
  minLearningRate: z.number().nonnegative().default(0),
  /** Linear scaling rule: lr × globalBatch / referenceBatchSize. @default false */
  scaleLinearly: z.boolean().default(false),
  referenceBatchSize: positiveInt.default(256),
});

const workersSchema = z.union([
  positiveInt.max(256),
  z
    .strictObject({ min: positiveInt.max(256), max: positiveInt.max(256) })
    .refine((w) => w.min <= w.max, { message: 'min must be <= max' }),
]);

export const jobSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'use letters, digits, ".", "_" and "-" only')
    .default('job'),
  seed: nonNegativeInt.max(2 ** 31 - 1).default(42),
  data: dataSchema,
  /**
   * The model, from exactly one source: `layers` (YAML, a stack or a graph), `from` (a saved
   * TensorFlow.js layers model's model.json) or `module` (an ES module exporting
   * createModel(tf, job)). Paths are relative to the job file. See shared/model-source.ts.
   */
  model: z
    .strictObject({
      /** Per-sample feature shape of the data; the model's input must match it. @default the data's (job.ts: inferInputShape) */
      input: z.array(positiveInt).min(1).optional(),
      layers: z.array(layerSchema).min(1).optional(),
      from: z.string().min(1).optional(),
      /** `from` only: train from the saved weights, or from fresh seeded ones. @default 'pretrained' */
      initialize: z.enum(['pretrained', 'fresh']).optional(),
      module: z.string().min(1).optional(),
      /** BatchNorm statistics over the global batch (all-reduced) instead of each rank's slice. @default false */
      syncBatchNorm: z.boolean().default(false),
    })
    .superRefine((model, ctx) => {
      const given = (['layers', 'from', 'module'] as const).filter((key) => model[key] !== undefined);
      if (given.length !== 1)
        ctx.addIssue({
          code: 'custom',
          message: `give exactly one of layers, from (a saved model.json) or module (an ES module exporting createModel), not ${given.length === 0 ? 'none' : given.join(' and ')}`,
        });
      if (model.initialize !== undefined && model.from === undefined)
        ctx.addIssue({ code: 'custom', path: ['initialize'], message: 'only applies to model.from' });
    }),
  /**
   * A loss name, or `{ type, fromLogits: true }` for a crossentropy whose model ends without
   * softmax/sigmoid (the loss applies it, as Keras's from_logits). See shared/loss-spec.ts.
   */
  loss: z.union(
    [
      z.enum(LOSSES),
      z.strictObject({ type: z.enum(LOSSES).exclude(['meanSquaredError']), fromLogits: z.boolean().default(false) }),
    ],
    {
      error: `Invalid option: expected one of ${LOSSES.map((l) => `"${l}"`).join('|')}, or { type: <a crossentropy>, fromLogits: true }`,
    },
  ),
  metrics: z.array(z.enum(METRICS)).default([]),
  optimizer: optimizerSchema,
  schedule: scheduleSchema.default({
    type: 'constant',
    warmupSteps: 0,
    stepSize: 1000,
    gamma: 0.1,
    minLearningRate: 0,
    scaleLinearly: false,
    referenceBatchSize: 256,
  }),
  training: z.strictObject({
    epochs: positiveInt,
    /** Global batch size (samples per step over all workers). */
    batchSize: positiveInt,
    /** Micro-batches per step on each rank (gradient accumulation). @default 1 */
    accumulationSteps: positiveInt.default(1),
    /** Stop after this many steps in total, whatever `epochs` says. */
    maxSteps: positiveInt.optional(),
  }),
  workers: workersSchema.default(2),
  backend: z.enum(['auto', 'tensorflow', 'wasm', 'cpu']).default('auto'),
  checkpoint: z
    .strictObject({
      /** Checkpoint every K steps; 0 = only at epoch ends. @default 100 */
      everySteps: nonNegativeInt.default(100),
      /** Keep the newest K checkpoints (the best one is kept as well). @default 3 */
      keep: positiveInt.default(3),
      atEpochEnd: z.boolean().default(true),
    })
    .default({ everySteps: 100, keep: 3, atEpochEnd: true }),
  validation: z
    .strictObject({
      /** Also validate every K steps; 0 = only at epoch ends. @default 0 */
      everySteps: nonNegativeInt.default(0),
      earlyStopping: z
        .strictObject({
          monitor: z
            .string()
            .regex(/^(train|validation)\.[A-Za-z]+$/, 'use "validation.<metric>" or "train.<metric>"')
            .default('validation.loss'),
          patience: positiveInt.default(3),
          minDelta: z.number().nonnegative().default(0),
          mode: z.enum(['auto', 'min', 'max']).default('auto'),
          /**
           * Keras's name: model/ and the final train/validation/test metrics come from the best
           * step (its checkpoint is loaded into the workers first) instead of the last one; the
           * checkpoints still end at the last step, so --resume continues from there. @default false
           */
          restoreBestWeights: z.boolean().default(false),
        })
        .optional(),
    })
    .default({ everySteps: 0 }),
  /** Local ES module exporting any of onTrainBegin, onEpochEnd, onValidationEnd, onCheckpoint, onTrainEnd. */
  hooks: z.string().min(1).optional(),
  /** Embedded mode: respawn a crashed local worker at most this many times in total. @default 2 */
  restartWorkers: nonNegativeInt.default(2),
  /** A rank whose compute time exceeds the median by more than `margin` for `patienceSteps` steps in a row is named as a straggler. */
  stragglers: z
    .strictObject({ margin: z.number().positive().default(0.5), patienceSteps: positiveInt.default(20) })
    .default({ margin: 0.5, patienceSteps: 20 }),
  /** Stop after this many consecutive steps skipped for non-finite gradients. @default 5 */
  maxConsecutiveSkippedSteps: positiveInt.default(5),
  timeouts: z
    .strictObject({
      /** A worker silent (no heartbeat) this long is evicted. @default 10000 */
      hangMs: positiveInt.min(1000).default(10_000),
      /** A worker's wait for one ring chunk. @default 60000 */
      collectiveMs: positiveInt.min(1000).default(60_000),
      /** How long to wait for replacement workers when fewer than workers.min remain. @default 60000 */
      replacementMs: nonNegativeInt.default(60_000),
    })
    .default({ hangMs: 10_000, collectiveMs: 60_000, replacementMs: 60_000 }),
  /**
   * Serve /metrics (Prometheus) and the live dashboard on this port, or ADDR:PORT (a bare port
   * binds 127.0.0.1; 0 = any free port). `--http` overrides it. @default off
   */
  http: httpAddressSchema.optional(),
  /** Write TensorBoard event files to <run>/tensorboard/ (scalars of every step and validation). @default true */
  tensorboard: z.boolean().default(true),
  /**
   * Mutual TLS on every connection and the job token (paths, relative to the job file). Flags
   * (--tls-ca, --tls-cert, --tls-key, --token-file) and RINGTRAIN_TLS_CA/_CERT/_KEY and
   * RINGTRAIN_TOKEN override it. Not part of the job hash. @default none: plaintext, no token
   */
  security: z
    .strictObject({
      ca: z.string().min(1).optional(),
      cert: z.string().min(1).optional(),
      key: z.string().min(1).optional(),
      tokenFile: z.string().min(1).optional(),
    })
    .optional(),
  /**
   * Robust mode: before each gradient all-reduce the ranks share their gradient norms, and a rank
   * whose norm is more than `gradientNormFactor` times the median of the others' is named and
   * evicted (README "When things fail" says what it catches and what not). Off when absent.
   */
  robust: z.strictObject({ gradientNormFactor: z.number().gt(1) }).optional(),
  /** Compare a hash of every rank's parameters every K steps; 0 disables. @default 50 */
  consistencyCheckEverySteps: nonNegativeInt.default(50),
  allreduce: z
    .strictObject({
      /**
       * Size of one pipelined ring chunk; a segment longer than 8 chunks is cut into 8 larger ones
       * (up to 8 MiB each), so large buffers travel in fewer frames. @default 262144
       */
      chunkBytes: positiveInt.min(1024).default(256 * 1024),
      /**
       * Data-plane transport between ring neighbours. Raw TCP frames are the only data plane (the
       * gRPC one was removed: see the README's architecture section); the key stays so that job
       * files naming it keep loading. @default 'tcp'
       */
      transport: z
        .literal('tcp', {
          error: 'the only data plane is tcp (the gRPC data plane was removed); drop the key or say tcp',
        })
        .default('tcp'),
      /** Wire form of gradient chunks: fp16/bf16 halve the bytes, scaled per chunk so nothing overflows. @default 'none' */
      compression: z.enum(['none', 'fp16', 'bf16']).default('none'),
    })
    .default({ chunkBytes: 256 * 1024, transport: 'tcp', compression: 'none' }),
});

/** A job as written (before defaults). */
export type JobInput = z.input<typeof jobSchema>;
type ParsedJob = z.output<typeof jobSchema>;
/** A resolved job: every default applied, model.input known (given, or the data's: job.ts). */
export type Job = Omit<ParsedJob, 'model'> & { model: ParsedJob['model'] & { input: number[] } };
export type DataSpec = z.output<typeof dataSchema>;
export type OptimizerSpec = z.output<typeof optimizerSchema>;
export type ScheduleSpec = z.output<typeof scheduleSchema>;
export type LossName = (typeof LOSSES)[number];
export type MetricName = (typeof METRICS)[number];

/** A resolved job as the coordinator sends it to workers (and writes it to job.yaml): model.input is present. */
export const resolvedJobSchema = jobSchema
  .superRefine((job, ctx) => {
    if (job.model.input === undefined)
      ctx.addIssue({ code: 'custom', path: ['model', 'input'], message: 'missing from a resolved job' });
  })
  .transform((job) => job as Job);
