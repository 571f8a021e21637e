// Sample indices travel as little-endian uint32 bytes (4 bytes a sample, no per-element framing).

export function encodeIndices(indices: Uint32Array): Buffer {
  const out = Buffer.allocUnsafe(indices.length * 4);
  for (let i = 0; i < indices.length; i++) out.writeUInt32LE(indices[i] ?? 0, i * 4);
  return out;
}

/** Decodes a uint32 LE byte string; `what` names the field in the error. */
export function decodeIndices(bytes: Uint8Array, what: string): Uint32Array {
  if (bytes.byteLength % 4 !== 0)
    throw new Error(`${what}: ${bytes.byteLength} bytes is not a whole number of uint32 indices`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Uint32Array(bytes.byteLength / 4);
  for (let i = 0; i < out.length; i++) out[i] = view.getUint32(i * 4, true);
  return out;
}
