// manifest.json of a packed folder (`ringtrain pack`): what the shards hold and how to check
// them. Records are fixed-size: featureSize float32 features then labelSize float32 labels,
// little-endian; split s's record i lives in shard floor(i / recordsPerShard) at byte offset
// (i % recordsPerShard) × recordBytes. So the index of a split is its shard list.
import * as path from 'node:path';
import { z } from 'zod';
import { DatasetError, describeReadFailure } from '../errors.js';
import type { Job } from '../job-schema.js';
import { lossName } from '../loss-spec.js';
import type { SplitName } from './dataset.js';
import type { DatasetInfo } from './data-source.js';
import { readFileSync } from 'node:fs';

export const MANIFEST_FILE = 'manifest.json';
export const PACKED_FORMAT = 'ringtrain-packed';

const shardSchema = z.strictObject({
  /** File name inside the packed folder. */
  file: z.string().regex(/^[a-z]+-\d{5}\.bin$/),
  records: z.number().int().nonnegative(),
  bytes: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
});

const splitSchema = z.strictObject({ count: z.number().int().nonnegative(), shards: z.array(shardSchema) });

export const manifestSchema = z.strictObject({
  format: z.literal(PACKED_FORMAT),
  version: z.literal(1),
  /** The content hash workers report: hashSplits over the three splits, as loadDataset's. */
  hash: z.string().min(1),
  record: z.strictObject({
    dtype: z.literal('float32'),
    featureFloats: z.number().int().positive(),
    labelFloats: z.number().int().nonnegative(),
    bytes: z.number().int().positive(),
    perShard: z.number().int().positive(),
  }),
  /** The job settings the labels were laid out for: another loss may need another layout. */
  packedFor: z.strictObject({ loss: z.string(), target: z.string(), source: z.unknown() }),
  /**
   * DatasetInfo without its hash: shapes, task, class names, columns, normalisation. Loose:
   * whatever metadata a source adds (a vocabulary, ...) travels through a pack unchanged.
   */
  info: z.looseObject({
    name: z.string(),
    inputShape: z.array(z.number().int().positive()).min(1),
    featureSize: z.number().int().positive(),
    labelSize: z.number().int().nonnegative(),
    task: z.enum(['classification', 'binary', 'regression', 'reconstruction']),
  }),
  splits: z.strictObject({ train: splitSchema, validation: splitSchema, test: splitSchema }),
});

export type PackedManifest = z.output<typeof manifestSchema>;
export type ShardEntry = z.output<typeof shardSchema>;

/** Reads and validates DIR/manifest.json; a missing or malformed one is a DatasetError naming it. */
export function readManifest(dir: string): PackedManifest {
  const file = path.join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new DatasetError(
      file,
      `${describeReadFailure(cause)}; is ${dir} a folder written by ringtrain pack?`,
      undefined,
      {
        cause,
      },
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new DatasetError(file, 'is not valid JSON; pack the data again', undefined, { cause });
  }
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue === undefined ? '' : `${issue.path.map(String).join('.')}: ${issue.message}`;
    throw new DatasetError(file, `is not a ringtrain pack manifest (${where}); pack the data again`);
  }
  return parsed.data;
}

/** The DatasetInfo the manifest describes (with its hash). */
export function manifestInfo(manifest: PackedManifest): DatasetInfo {
  return { ...(manifest.info as Omit<DatasetInfo, 'hash'>), hash: manifest.hash };
}

/** A job that trains on the folder must agree with what was packed: input shape and label layout. */
export function checkManifestAgainstJob(manifest: PackedManifest, job: Job, dir: string): void {
  const file = path.join(dir, MANIFEST_FILE);
  const info = manifestInfo(manifest);
  const packed = info.inputShape;
  const wanted = job.model.input;
  if (packed.length !== wanted.length || packed.some((d, i) => d !== wanted[i]))
    throw new DatasetError(
      file,
      `holds samples of shape [${packed.join(', ')}], but model.input is [${wanted.join(', ')}]; set model.input: [${packed.join(', ')}] or pack the data again for this model`,
    );
  const loss = lossName(job.loss);
  if (loss !== manifest.packedFor.loss)
    throw new DatasetError(
      file,
      `labels were packed for loss ${manifest.packedFor.loss}, but the job's loss is ${loss}; pack the data again with this job (ringtrain pack JOB.yaml --out DIR)`,
    );
}

/** Shard file name: split name and its number, e.g. train-00003.bin. */
export function shardFileName(split: SplitName, index: number): string {
  return `${split}-${String(index).padStart(5, '0')}.bin`;
}
