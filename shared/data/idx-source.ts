// Reads an IDX image/label pair (the format of the original MNIST files): a big-endian header
// [0, 0, 0x08 (unsigned byte), ndims] followed by ndims uint32 sizes and the raw bytes.
// Images are 0x00000803 (count × rows × cols), labels 0x00000801 (count). Either file may be
// gzipped (detected by the 1f 8b magic, not by the name). Pixels are scaled to [0, 1].
import { gunzipSync } from 'node:zlib';
import { DatasetError } from '../errors.js';
import { readDataFile } from './read-data-file.js';
import type { DataSpec } from '../job-schema.js';
import type { RawSamples } from './raw-samples.js';

type IdxSpec = Extract<DataSpec, { format: 'idx' }>;

const IMAGES_MAGIC = 0x00000803;
const LABELS_MAGIC = 0x00000801;
/** Labels below this many classes still get a one-hot of this width (MNIST-like data). */
const MIN_CLASSES = 10;

export interface IdxTensor {
  dims: number[];
  /** The values after the header, exactly product(dims) bytes. */
  data: Uint8Array;
}

export function readIdx(spec: IdxSpec): RawSamples {
  const images = readIdxFile(spec.images, IMAGES_MAGIC);
  const labels = readIdxFile(spec.labels, LABELS_MAGIC);
  const [imageCount = 0, rows = 0, cols = 0] = images.dims;
  const [labelCount = 0] = labels.dims;
  if (imageCount !== labelCount) {
    throw new DatasetError(
      spec.images,
      `holds ${imageCount} images but ${spec.labels} holds ${labelCount} labels; they must match`,
    );
  }
  if (imageCount === 0) throw new DatasetError(spec.images, 'holds no images');
  const count = spec.limit === undefined ? imageCount : Math.min(spec.limit, imageCount);
  const featureSize = rows * cols;
  const x = new Float32Array(count * featureSize);
  for (let i = 0; i < x.length; i++) x[i] = (images.data[i] as number) / 255;
  const classIndex = Uint32Array.from(labels.data.subarray(0, count));
  let numClasses = MIN_CLASSES;
  for (const c of classIndex) numClasses = Math.max(numClasses, c + 1);
  return { file: spec.images, count, featureSize, x, target: { kind: 'classes', classIndex, numClasses } };
}

/** Reads, un-gzips and parses one IDX file whose magic must be `magic`. */
export function readIdxFile(file: string, magic: number): IdxTensor {
  let bytes: Uint8Array = readDataFile(file);
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      bytes = gunzipSync(bytes);
    } catch (cause) {
      throw new DatasetError(file, 'starts like gzip but cannot be decompressed (truncated or corrupt)', undefined, {
        cause,
      });
    }
  }
  return parseIdx(bytes, magic, file);
}

export function parseIdx(bytes: Uint8Array, magic: number, file: string): IdxTensor {
  if (bytes.length < 4)
    throw new DatasetError(file, `truncated: ${bytes.length} bytes, shorter than the IDX magic number`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const found = view.getUint32(0, false);
  if (found !== magic) {
    const kind = magic === IMAGES_MAGIC ? 'images (idx3-ubyte)' : 'labels (idx1-ubyte)';
    throw new DatasetError(file, `bad magic number 0x${hex8(found)}; expected 0x${hex8(magic)} for IDX ${kind}`);
  }
  const ndims = magic & 0xff;
  const headerBytes = 4 + 4 * ndims;
  if (bytes.length < headerBytes)
    throw new DatasetError(file, `truncated: the header needs ${headerBytes} bytes, the file has ${bytes.length}`);
  const dims = Array.from({ length: ndims }, (_, i) => view.getUint32(4 + 4 * i, false));
  const dataBytes = dims.reduce((a, b) => a * b, 1);
  if (bytes.length - headerBytes < dataBytes) {
    throw new DatasetError(
      file,
      `truncated: dims [${dims.join(', ')}] need ${dataBytes} data bytes, the file has ${bytes.length - headerBytes}`,
    );
  }
  return { dims, data: bytes.subarray(headerBytes, headerBytes + dataBytes) };
}

/** Serialises an IDX tensor (uncompressed); the inverse of parseIdx, used to write fixtures and exports. */
export function encodeIdx(dims: readonly number[], data: Uint8Array): Uint8Array {
  const magic = 0x0800 | dims.length; // unsigned-byte data, then the number of dims
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, magic, false);
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

function hex8(value: number): string {
  return value.toString(16).padStart(8, '0');
}
