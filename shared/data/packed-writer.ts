// `ringtrain pack`: streams any DataSource into fixed-size float32 records in shards plus
// manifest.json (packed-manifest.ts). Memory stays at one chunk of rows whatever the dataset's
// size: rows are pulled through `fill` a chunk at a time.
//
// Invariants:
// - Nothing half-written looks complete: everything goes to OUT.tmp-XXXX, which is renamed to
//   OUT only after the manifest is written and synced; a failure removes the temporary folder.
// - The manifest's hash is hashSplits over the same bytes as loadDataset's Dataset.hash (counts,
//   all x, all y per split), so packed and unpacked data report the same hash.
import { createHash, type Hash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdtempSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import * as path from 'node:path';
import { FlagError } from '../errors.js';
import type { Job } from '../job-schema.js';
import { lossName } from '../loss-spec.js';
import { SPLIT_NAMES, type SplitName } from './dataset.js';
import type { DataSource } from './data-source.js';
import {
  MANIFEST_FILE,
  PACKED_FORMAT,
  shardFileName,
  type PackedManifest,
  type ShardEntry,
} from './packed-manifest.js';

/** @default 64 MiB */
export const DEFAULT_SHARD_BYTES = 64 * 1024 * 1024;
/** Rows pulled through fill at a time (bounded bytes, see chunkRows). */
const CHUNK_BYTES = 4 * 1024 * 1024;

export interface PackOptions {
  /** Target shard size; a shard holds floor(shardBytes / recordBytes) records, at least 1. @default 64 MiB */
  shardBytes?: number;
}

export interface PackResult {
  dir: string;
  manifest: PackedManifest;
  bytes: number;
}

/** Packs `source` (the job's data, opened) into `outDir`, which must not exist yet. */
export function packDataSource(source: DataSource, job: Job, outDir: string, options: PackOptions = {}): PackResult {
  const out = path.resolve(outDir);
  if (existsSync(out)) throw new FlagError('--out', `${outDir} already exists; remove it or pack into a new folder`);
  const recordFloats = source.featureSize + source.labelSize;
  const recordBytes = recordFloats * 4;
  const perShard = Math.max(1, Math.floor((options.shardBytes ?? DEFAULT_SHARD_BYTES) / recordBytes));
  const tmp = mkdtempSync(`${out}.tmp-`);
  try {
    const content = createHash('sha256');
    const splits = {} as PackedManifest['splits'];
    let bytes = 0;
    for (const split of SPLIT_NAMES) {
      const shards = writeSplit(source, split, tmp, perShard, content);
      splits[split] = { count: source[split].count, shards };
      bytes += shards.reduce((sum, s) => sum + s.bytes, 0);
    }
    const { train: _t, validation: _v, test: _s, fill: _f, readAhead: _r, close: _c, hash: _h, ...info } = source;
    const manifest: PackedManifest = {
      format: PACKED_FORMAT,
      version: 1,
      hash: content.digest('hex').slice(0, 16),
      record: {
        dtype: 'float32',
        featureFloats: source.featureSize,
        labelFloats: source.labelSize,
        bytes: recordBytes,
        perShard,
      },
      packedFor: {
        loss: lossName(job.loss),
        target: 'target' in job.data ? job.data.target : 'label',
        source: job.data,
      },
      info: JSON.parse(JSON.stringify(info)) as PackedManifest['info'],
      splits,
    };
    writeSynced(path.join(tmp, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
    renameSync(tmp, out);
    return { dir: out, manifest, bytes };
  } catch (error) {
    rmSync(tmp, { recursive: true, force: true });
    throw error;
  }
}

/**
 * Writes one split's records and feeds the content hash its header, x bytes, then y bytes. The
 * hash takes all x before any y, so the labels wait in a scratch file in the temporary folder
 * (never in memory: a split's labels can be large) and are hashed after the last record.
 */
function writeSplit(source: DataSource, split: SplitName, dir: string, perShard: number, content: Hash): ShardEntry[] {
  const fs = source.featureSize;
  const ls = source.labelSize;
  const count = source[split].count;
  const rows = chunkRows(fs + ls);
  const x = new Float32Array(rows * fs);
  const y = new Float32Array(rows * ls);
  const record = new Float32Array(rows * (fs + ls));
  content.update(bytesOf(new Uint32Array([count, count * fs, count * ls])));
  const shards: ShardEntry[] = [];
  const labelsFile = path.join(dir, `.${split}-labels.scratch`);
  const labels = openSync(labelsFile, 'wx+');
  let shard: { fd: number; hash: Hash; entry: ShardEntry } | undefined;
  const closeShard = (): void => {
    if (shard === undefined) return;
    fsyncSync(shard.fd);
    closeSync(shard.fd);
    shard.entry.sha256 = shard.hash.digest('hex');
    shards.push(shard.entry);
    shard = undefined;
  };
  for (let start = 0; start < count;) {
    if (shard === undefined) {
      const file = shardFileName(split, shards.length);
      shard = {
        fd: openSync(path.join(dir, file), 'wx'),
        hash: createHash('sha256'),
        entry: { file, records: 0, bytes: 0, sha256: '' },
      };
    }
    const n = Math.min(rows, count - start, perShard - shard.entry.records);
    source.fill(split, indexRange(start, n), x, y);
    for (let i = 0; i < n; i++) {
      record.set(x.subarray(i * fs, (i + 1) * fs), i * (fs + ls));
      record.set(y.subarray(i * ls, (i + 1) * ls), i * (fs + ls) + fs);
    }
    const written = bytesOf(record.subarray(0, n * (fs + ls)));
    writeAll(shard.fd, written);
    shard.hash.update(written);
    content.update(bytesOf(x.subarray(0, n * fs)));
    writeAll(labels, bytesOf(y.subarray(0, n * ls)));
    shard.entry.records += n;
    shard.entry.bytes += written.byteLength;
    start += n;
    if (shard.entry.records === perShard) closeShard();
  }
  closeShard();
  hashFile(labels, count * ls * 4, content, bytesOf(record));
  closeSync(labels);
  rmSync(labelsFile);
  return shards;
}

/** Feeds `bytes` bytes of the open file `fd` (from its start) to `hash`, through `scratch`. */
function hashFile(fd: number, bytes: number, hash: Hash, scratch: Uint8Array): void {
  for (let offset = 0; offset < bytes;) {
    const n = readSync(fd, scratch, 0, Math.min(scratch.byteLength, bytes - offset), offset);
    if (n === 0) throw new Error(`label scratch file ended at byte ${offset} of ${bytes}`);
    hash.update(scratch.subarray(0, n));
    offset += n;
  }
}

function chunkRows(recordFloats: number): number {
  return Math.max(1, Math.floor(CHUNK_BYTES / (recordFloats * 4)));
}

function indexRange(start: number, n: number): Uint32Array {
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = start + i;
  return out;
}

function writeAll(fd: number, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.byteLength;) done += writeSync(fd, bytes, done, bytes.byteLength - done);
}

function writeSynced(file: string, text: string): void {
  writeFileSync(file, text, { flag: 'wx' });
  const fd = openSync(file, 'r');
  fsyncSync(fd);
  closeSync(fd);
}

function bytesOf(array: Float32Array | Uint32Array): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}
