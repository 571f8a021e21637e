// The exported model as one blob on the control stream: uint32 LE length of model.json, the
// model.json text (UTF-8), then the bytes of weights.bin.

export interface ModelFiles {
  modelJson: string;
  weights: Uint8Array;
}

export function encodeModelBlob(files: ModelFiles): Buffer {
  const json = Buffer.from(files.modelJson, 'utf8');
  const head = Buffer.alloc(4);
  head.writeUInt32LE(json.byteLength, 0);
  return Buffer.concat([head, json, files.weights]);
}

export function decodeModelBlob(blob: Uint8Array): ModelFiles {
  const buf = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  if (buf.byteLength < 4) throw new Error('model blob is shorter than its header');
  const jsonLength = buf.readUInt32LE(0);
  if (4 + jsonLength > buf.byteLength)
    throw new Error(`model blob declares ${jsonLength} bytes of model.json but holds ${buf.byteLength - 4}`);
  return {
    modelJson: buf.subarray(4, 4 + jsonLength).toString('utf8'),
    weights: new Uint8Array(buf.subarray(4 + jsonLength)),
  };
}
