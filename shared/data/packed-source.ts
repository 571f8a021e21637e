// A packed folder as a DataSource: rows are read by offset (pread) from the shards that hold
// them, so a process's memory does not grow with the dataset; the manifest gives shapes, counts
// and the hash without reading a shard.
//
// Invariants:
// - Every shard is stat'ed at open (a missing or short one fails before training); its full
//   checksum is checked the first time a row of it is read (`data.verify: checksum`).
// - At most MAX_READ_AHEAD read-aheads are held (the step about to run and the one after it:
//   a slice's rows each), the oldest dropped first; a fill takes and drops its own.
import { closeSync, fstatSync, openSync, read, readSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { DatasetError, describeReadFailure } from '../errors.js';
import type { Job } from '../job-schema.js';
import type { SplitName } from './dataset.js';
import type { DataSource } from './data-source.js';
import {
  checkManifestAgainstJob,
  manifestInfo,
  readManifest,
  type PackedManifest,
  type ShardEntry,
} from './packed-manifest.js';

const VERIFY_CHUNK_BYTES = 1024 * 1024;
/** Orders queued ahead of the running step: usually one, two when a step was late. */
const MAX_READ_AHEAD = 2;

type Verify = 'size' | 'checksum';

/** The job's `data: { format: packed }` folder, checked against the job. */
export function openPackedSource(job: Job): DataSource {
  if (job.data.format !== 'packed') throw new TypeError('openPackedSource needs a packed job');
  const dir = job.data.path;
  const manifest = readManifest(dir);
  checkManifestAgainstJob(manifest, job, dir);
  return new PackedSource(dir, manifest, job.data.verify).asSource();
}

/** A packed folder opened without a job (pack --verify, tests). */
export function openPackedDir(dir: string, verify: Verify = 'checksum'): DataSource {
  return new PackedSource(dir, readManifest(dir), verify).asSource();
}

interface OpenShard {
  fd: number;
  entry: ShardEntry;
}

interface ReadAhead {
  split: SplitName;
  indices: Uint32Array;
  bytes: Buffer;
  pending: number;
  failed: boolean;
  /** Settles when pending reaches 0. */
  done: Promise<void>;
}

class PackedSource {
  private readonly shards = new Map<string, OpenShard>();
  private readonly recordBytes: number;
  private readonly record: Buffer;
  /** checkSum's read buffer, allocated at the first check and kept (one per source, not per shard). */
  private verifyChunk: Buffer | undefined;
  /** Oldest first. */
  private readonly ahead: ReadAhead[] = [];

  constructor(
    private readonly dir: string,
    private readonly manifest: PackedManifest,
    private readonly verify: Verify,
  ) {
    this.recordBytes = manifest.record.bytes;
    this.record = Buffer.alloc(this.recordBytes);
    const expected = (manifest.record.featureFloats + manifest.record.labelFloats) * 4;
    if (expected !== this.recordBytes)
      throw new DatasetError(
        this.file('manifest.json'),
        `record.bytes ${this.recordBytes} should be ${expected}; pack the data again`,
      );
    for (const split of Object.values(manifest.splits))
      for (const entry of split.shards) this.checkSize(entry, statSize(this.file(entry.file)));
  }

  asSource(): DataSource {
    const info = manifestInfo(this.manifest);
    const { splits } = this.manifest;
    return {
      ...info,
      train: { count: splits.train.count },
      validation: { count: splits.validation.count },
      test: { count: splits.test.count },
      fill: (split, indices, x, y) => this.fill(split, indices, x, y),
      readAhead: (split, indices) => this.readAhead(split, indices),
      settle: (split, indices) => {
        const ahead = this.ahead.find((a) => sameRows(a, split, indices));
        return ahead?.done ?? Promise.resolve();
      },
      close: () => this.close(),
    };
  }

  fill(split: SplitName, indices: Uint32Array, x: Float32Array, y: Float32Array): void {
    const at = this.ahead.findIndex((a) => sameRows(a, split, indices));
    const ahead = at < 0 ? undefined : this.ahead.splice(at, 1)[0];
    const fromAhead = ahead !== undefined && ahead.pending === 0 && !ahead.failed;
    for (let i = 0; i < indices.length; i++) {
      const row = indices[i] ?? 0;
      let bytes: Buffer;
      if (fromAhead) bytes = ahead.bytes.subarray(i * this.recordBytes, (i + 1) * this.recordBytes);
      else {
        const { shard, offset } = this.locate(split, row);
        this.readRecord(shard, offset, this.record);
        bytes = this.record;
      }
      this.unpack(bytes, i, x, y);
    }
  }

  /** Starts async reads of `indices` (threadpool), used by the fill that asks for the same rows. */
  readAhead(split: SplitName, indices: Uint32Array): void {
    // Its own ArrayBuffer (never Node's shared pool), so every record's floats are 4-byte aligned.
    const bytes = Buffer.from(new ArrayBuffer(indices.length * this.recordBytes));
    let finish = (): void => undefined;
    const done = new Promise<void>((resolve) => (finish = resolve));
    const ahead: ReadAhead = { split, indices: indices.slice(), bytes, pending: indices.length, failed: false, done };
    this.ahead.push(ahead);
    if (this.ahead.length > MAX_READ_AHEAD) this.ahead.shift();
    if (indices.length === 0) finish();
    let started = 0;
    try {
      for (; started < indices.length; started++) {
        const i = started;
        const { shard, offset } = this.locate(split, indices[i] ?? 0);
        read(shard.fd, bytes, i * this.recordBytes, this.recordBytes, offset, (error, n) => {
          if (error !== null || n !== this.recordBytes) ahead.failed = true;
          if (--ahead.pending === 0) finish();
        });
      }
    } catch {
      // fill reads the same rows synchronously and reports the problem there, at its step; the
      // reads already started still settle `done` (pending counts only those).
      ahead.failed = true;
      ahead.pending -= indices.length - started;
      if (ahead.pending === 0) finish();
    }
  }

  close(): void {
    this.ahead.length = 0;
    for (const shard of this.shards.values()) closeSync(shard.fd);
    this.shards.clear();
  }

  private unpack(bytes: Buffer, i: number, x: Float32Array, y: Float32Array): void {
    const fs = this.manifest.record.featureFloats;
    const ls = this.manifest.record.labelFloats;
    const floats = new Float32Array(bytes.buffer, bytes.byteOffset, fs + ls);
    x.set(floats.subarray(0, fs), i * fs);
    y.set(floats.subarray(fs), i * ls);
  }

  private locate(split: SplitName, row: number): { shard: OpenShard; offset: number } {
    const { count, shards } = this.manifest.splits[split];
    if (row >= count) throw new RangeError(`sample index ${row} is outside the split (${count} samples)`);
    const perShard = this.manifest.record.perShard;
    const entry = shards[Math.floor(row / perShard)];
    if (entry === undefined)
      throw new DatasetError(this.file('manifest.json'), `lists no shard for ${split} row ${row}; pack the data again`);
    return { shard: this.open(entry), offset: (row % perShard) * this.recordBytes };
  }

  /** Opens a shard the first time a row of it is wanted, checking its size (and checksum). */
  private open(entry: ShardEntry): OpenShard {
    const known = this.shards.get(entry.file);
    if (known !== undefined) return known;
    const file = this.file(entry.file);
    let fd: number;
    try {
      fd = openSync(file, 'r');
    } catch (cause) {
      throw missingShard(file, this.dir, cause);
    }
    try {
      this.checkSize(entry, fstatSync(fd).size);
      if (this.verify === 'checksum') this.checkSum(fd, entry);
    } catch (error) {
      closeSync(fd);
      throw error;
    }
    const shard = { fd, entry };
    this.shards.set(entry.file, shard);
    return shard;
  }

  private checkSize(entry: ShardEntry, size: number): void {
    if (size !== entry.bytes)
      throw new DatasetError(
        this.file(entry.file),
        `shard is ${size} bytes, the manifest says ${entry.bytes} (truncated or overwritten); copy the packed folder again or run ringtrain pack again`,
      );
  }

  private checkSum(fd: number, entry: ShardEntry): void {
    const hash = createHash('sha256');
    const chunk = (this.verifyChunk ??= Buffer.allocUnsafe(VERIFY_CHUNK_BYTES));
    for (let offset = 0; offset < entry.bytes;) {
      const n = readSync(fd, chunk, 0, Math.min(chunk.byteLength, entry.bytes - offset), offset);
      if (n === 0) break;
      hash.update(chunk.subarray(0, n));
      offset += n;
    }
    if (hash.digest('hex') !== entry.sha256)
      throw new DatasetError(
        this.file(entry.file),
        'shard checksum does not match the manifest (corrupt); copy the packed folder again or run ringtrain pack again',
      );
  }

  private readRecord(shard: OpenShard, offset: number, into: Buffer): void {
    const n = readSync(shard.fd, into, 0, this.recordBytes, offset);
    if (n !== this.recordBytes)
      throw new DatasetError(this.file(shard.entry.file), `short read at byte ${offset} (truncated while in use?)`);
  }

  private file(name: string): string {
    return path.join(this.dir, name);
  }
}

function sameRows(ahead: ReadAhead, split: SplitName, indices: Uint32Array): boolean {
  if (ahead.split !== split || ahead.indices.length !== indices.length) return false;
  for (let i = 0; i < indices.length; i++) if (ahead.indices[i] !== indices[i]) return false;
  return true;
}

function statSize(file: string): number {
  try {
    return statSync(file).size;
  } catch (cause) {
    throw missingShard(file, path.dirname(file), cause);
  }
}

function missingShard(file: string, dir: string, cause: unknown): DatasetError {
  return new DatasetError(
    file,
    `${describeReadFailure(cause)}; every worker needs the whole packed folder ${dir} (copy it to this host or use a shared volume)`,
    undefined,
    { cause },
  );
}
