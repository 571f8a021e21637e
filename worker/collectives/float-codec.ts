// Float32Array <-> little-endian bytes, the wire form of every tensor on the data plane.
// Invariants: `encodeFloat32LE` always returns a fresh copy (callers mutate their buffer after
// handing it over), and `decodeFloat32LE` always returns a 4-byte-aligned Float32Array.
import { endianness } from 'node:os';

const HOST_IS_LE = endianness() === 'LE';

/** A new Buffer holding `values` as little-endian float32; never aliases `values`. */
export function encodeFloat32LE(values: Float32Array): Buffer {
  const bytes = Buffer.allocUnsafe(values.byteLength);
  if (HOST_IS_LE) {
    bytes.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
    return bytes;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i]!, true);
  return bytes;
}

/**
 * Floats from little-endian bytes. Views `bytes` without copying when the host is
 * little-endian and the bytes are 4-aligned; copies otherwise (a Float32Array view needs a
 * byte offset divisible by 4, and protobuf `bytes` fields land at arbitrary offsets).
 * The caller checks `bytes.byteLength % 4 === 0`; a trailing partial float is ignored.
 */
export function decodeFloat32LE(bytes: Uint8Array): Float32Array {
  const count = Math.floor(bytes.byteLength / 4);
  if (HOST_IS_LE) {
    if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, count);
    const aligned = new Uint8Array(count * 4);
    aligned.set(bytes.subarray(0, count * 4));
    return new Float32Array(aligned.buffer);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const values = new Float32Array(count);
  for (let i = 0; i < count; i++) values[i] = view.getFloat32(i * 4, true);
  return values;
}
