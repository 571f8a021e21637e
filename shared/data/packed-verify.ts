// `ringtrain pack --verify DIR`: rechecks every shard of a packed folder against its manifest
// (present, its size, its sha256) and names every bad one in one error.
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import * as path from 'node:path';
import { DatasetError, errnoCode } from '../errors.js';
import { readManifest, type ShardEntry } from './packed-manifest.js';

const CHUNK_BYTES = 1024 * 1024;

export interface VerifyResult {
  shards: number;
  bytes: number;
  hash: string;
}

export function verifyPackedDir(dir: string): VerifyResult {
  const manifest = readManifest(dir);
  const entries = Object.values(manifest.splits).flatMap((split) => split.shards);
  const problems: string[] = [];
  let bytes = 0;
  for (const entry of entries) {
    const problem = checkShard(path.join(dir, entry.file), entry);
    if (problem === undefined) bytes += entry.bytes;
    else problems.push(`${entry.file} (${problem})`);
  }
  if (problems.length > 0)
    throw new DatasetError(
      dir,
      `${problems.length} of ${entries.length} shards are bad: ${problems.join(', ')}; copy the packed folder again or run ringtrain pack again`,
    );
  return { shards: entries.length, bytes, hash: manifest.hash };
}

/** Why the shard is bad, or undefined when it is whole. */
function checkShard(file: string, entry: ShardEntry): string | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (error) {
    return errnoCode(error) === 'ENOENT' ? 'missing' : `unreadable: ${errnoCode(error) ?? 'error'}`;
  }
  try {
    const size = fstatSync(fd).size;
    if (size !== entry.bytes) return `${size} bytes, the manifest says ${entry.bytes}: truncated or overwritten`;
    const hash = createHash('sha256');
    const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
    for (let offset = 0; offset < size;) {
      const n = readSync(fd, chunk, 0, Math.min(CHUNK_BYTES, size - offset), offset);
      if (n === 0) return 'short read';
      hash.update(chunk.subarray(0, n));
      offset += n;
    }
    return hash.digest('hex') === entry.sha256 ? undefined : 'checksum does not match: corrupt';
  } finally {
    closeSync(fd);
  }
}
