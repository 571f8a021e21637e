// Fingerprint of the data a job trains on. The coordinator sends it with the job; a worker
// whose own load gives a different hash (other file, other package version) must not join.
import { createHash } from 'node:crypto';

interface HashedSplit {
  x: Float32Array;
  y: Float32Array;
  count: number;
}

/** sha256 (hex, first 16 chars) over each split's count, x bytes and y bytes, in the order given. */
export function hashSplits(splits: readonly HashedSplit[]): string {
  const hash = createHash('sha256');
  for (const split of splits) {
    // Counts (and lengths) go first so that moving a sample between splits changes the hash.
    const header = new Uint32Array([split.count, split.x.length, split.y.length]);
    hash.update(bytesOf(header));
    hash.update(bytesOf(split.x));
    hash.update(bytesOf(split.y));
  }
  return hash.digest('hex').slice(0, 16);
}

/** Little-endian bytes on every platform Node supports (x64, arm64). */
function bytesOf(array: Float32Array | Uint32Array): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}
