// The parameter hash that proves replicas agree (the replica consistency check) and that lets a
// coordinator verify a state it did not compute (a rejoining worker's claimed step): pure, the
// same on workers and the coordinator.
import { createHash } from 'node:crypto';

const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * First 64 bits (16 hex chars) of SHA-256 over the little-endian float32 bytes. Equal hashes
 * mean bit-identical parameters (including −0 vs +0 and NaN payloads) on any host.
 */
export function hashParams(params: Float32Array): string {
  const hash = createHash('sha256');
  if (HOST_IS_LITTLE_ENDIAN) {
    hash.update(new Uint8Array(params.buffer, params.byteOffset, params.byteLength));
  } else {
    const bytes = new Uint8Array(params.byteLength);
    const view = new DataView(bytes.buffer);
    for (let i = 0; i < params.length; i++) view.setFloat32(4 * i, params[i] as number, true);
    hash.update(bytes);
  }
  return hash.digest('hex').slice(0, 16);
}
