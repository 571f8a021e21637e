// The whole training state (cursor, parameters, non-trainable weights, optimizer slots, small
// JSON extras) as one self-checking binary blob: used for checkpoints, for coordinator<->worker
// transfers and for broadcasting state to a rejoining rank.
//
// Layout (all integers and floats little-endian):
//   0  "RTST"                     magic
//   4  u32 version                 FORMAT_VERSION
//   8  u32 headerBytes             length of the UTF-8 JSON header
//  12  u32 crc32                   zlib CRC-32 of every byte after the preamble
//  16  JSON header                 cursor, optimizer type/step, section lengths, extra
//      zero padding to a multiple of 4
//      float32 sections            params, nonTrainable, then optimizer slots in header order
// The blob ends exactly after the last section; anything shorter or longer is rejected.
import { crc32 } from 'node:zlib';
import { z } from 'zod';
import { CheckpointError } from './errors.js';

/** Optimizer state on flat buffers; slot names are optimizer-specific (adam: m, v; momentum: velocity). */
export interface OptimizerState {
  type: string;
  step: number;
  slots: Record<string, Float32Array>;
}

/** Where training stands: `step` counts applied updates over the whole run. */
export interface TrainCursor {
  step: number;
  epoch: number;
  batchInEpoch: number;
}

export interface TrainState {
  cursor: TrainCursor;
  /** Flat trainable parameters. */
  params: Float32Array;
  /** Flat non-trainable weights (BatchNorm moving mean/variance); may be empty. */
  nonTrainable: Float32Array;
  optimizer: OptimizerState;
  /** Small JSON-serialisable extras (early-stopping state, rng state, ...). */
  extra?: Record<string, unknown>;
}

export const TRAIN_STATE_MAGIC = 'RTST';
export const TRAIN_STATE_VERSION = 1;
const PREAMBLE_BYTES = 16;

const count = z.number().int().nonnegative();
const headerSchema = z.strictObject({
  cursor: z.strictObject({ step: count, epoch: count, batchInEpoch: count }),
  optimizer: z.strictObject({
    type: z.string(),
    step: count,
    slots: z.array(z.strictObject({ name: z.string().min(1), length: count })),
  }),
  paramCount: count,
  nonTrainableCount: count,
  extra: z.record(z.string(), z.unknown()).optional(),
});
type Header = z.infer<typeof headerSchema>;

/** Serialises `state`; float sections are copied, so later changes to `state` do not leak in. */
export function encodeTrainState(state: TrainState): Uint8Array {
  const sections = [state.params, state.nonTrainable, ...Object.values(state.optimizer.slots)];
  const header: Header = {
    cursor: { step: state.cursor.step, epoch: state.cursor.epoch, batchInEpoch: state.cursor.batchInEpoch },
    optimizer: {
      type: state.optimizer.type,
      step: state.optimizer.step,
      slots: Object.entries(state.optimizer.slots).map(([name, slot]) => ({ name, length: slot.length })),
    },
    paramCount: state.params.length,
    nonTrainableCount: state.nonTrainable.length,
    ...(state.extra === undefined ? {} : { extra: state.extra }),
  };
  const checked = headerSchema.safeParse(header);
  if (!checked.success)
    throw new RangeError(`encodeTrainState: invalid state: ${checked.error.issues[0]?.message ?? 'unknown'}`);
  const headerBytes = new TextEncoder().encode(JSON.stringify(header));
  const floatsOffset = align4(PREAMBLE_BYTES + headerBytes.length);
  const totalFloats = sections.reduce((sum, s) => sum + s.length, 0);
  const blob = new Uint8Array(floatsOffset + 4 * totalFloats);
  blob.set(new TextEncoder().encode(TRAIN_STATE_MAGIC), 0);
  const view = new DataView(blob.buffer);
  view.setUint32(4, TRAIN_STATE_VERSION, true);
  view.setUint32(8, headerBytes.length, true);
  blob.set(headerBytes, PREAMBLE_BYTES);
  let offset = floatsOffset;
  for (const section of sections) {
    writeFloat32LE(blob, offset, section);
    offset += 4 * section.length;
  }
  view.setUint32(12, crc32(blob.subarray(PREAMBLE_BYTES)), true);
  return blob;
}

/**
 * Parses a blob made by encodeTrainState. `source` names it in errors (a path or "rank 2").
 * Every Float32Array returned is a fresh, aligned copy: nothing aliases `bytes`.
 * @throws CheckpointError on bad magic, unknown version, truncation, bad header or checksum.
 */
export function decodeTrainState(bytes: Uint8Array, source: string): TrainState {
  const fail = (reason: string, cause?: unknown): never => {
    throw new CheckpointError(source, reason, cause === undefined ? undefined : { cause });
  };
  if (bytes.length < PREAMBLE_BYTES)
    fail(`truncated: ${bytes.length} bytes is shorter than the ${PREAMBLE_BYTES}-byte preamble`);
  const magic = new TextDecoder().decode(bytes.subarray(0, 4));
  if (magic !== TRAIN_STATE_MAGIC)
    fail(`not a ringtrain state blob (magic ${JSON.stringify(magic)}, expected "${TRAIN_STATE_MAGIC}")`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(4, true);
  if (version !== TRAIN_STATE_VERSION)
    fail(`unsupported format version ${version} (this build reads ${TRAIN_STATE_VERSION})`);
  const headerLength = view.getUint32(8, true);
  if (PREAMBLE_BYTES + headerLength > bytes.length)
    fail(`truncated: header needs ${headerLength} bytes, only ${bytes.length - PREAMBLE_BYTES} present`);
  const header = parseHeader(bytes.subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + headerLength), fail);
  const lengths = [header.paramCount, header.nonTrainableCount, ...header.optimizer.slots.map((s) => s.length)];
  const floatsOffset = align4(PREAMBLE_BYTES + headerLength);
  const expectedBytes = floatsOffset + 4 * lengths.reduce((sum, n) => sum + n, 0);
  if (bytes.length < expectedBytes) fail(`truncated: expected ${expectedBytes} bytes, got ${bytes.length}`);
  if (bytes.length > expectedBytes)
    fail(`${bytes.length - expectedBytes} unexpected trailing bytes after the last section`);
  const storedCrc = view.getUint32(12, true);
  if (crc32(bytes.subarray(PREAMBLE_BYTES)) !== storedCrc) fail('checksum mismatch: the blob is corrupt');
  const sections: Float32Array[] = [];
  let offset = floatsOffset;
  for (const length of lengths) {
    sections.push(readFloat32LE(bytes, offset, length));
    offset += 4 * length;
  }
  return assembleState(header, sections);
}

function parseHeader(headerBytes: Uint8Array, fail: (reason: string, cause?: unknown) => never): Header {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (cause) {
    return fail('header is not valid UTF-8 JSON', cause);
  }
  const parsed = headerSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return fail(
      `malformed header: ${issue === undefined ? 'unknown' : `${issue.path.map(String).join('.')}: ${issue.message}`}`,
    );
  }
  const names = parsed.data.optimizer.slots.map((s) => s.name);
  if (new Set(names).size !== names.length)
    return fail(`malformed header: duplicate optimizer slot names ${names.join(', ')}`);
  return parsed.data;
}

function assembleState(header: Header, sections: Float32Array[]): TrainState {
  const [params, nonTrainable, ...slotArrays] = sections;
  const slots: Record<string, Float32Array> = {};
  header.optimizer.slots.forEach((slot, i) => {
    slots[slot.name] = slotArrays[i] ?? new Float32Array(0);
  });
  const state: TrainState = {
    cursor: header.cursor,
    params: params ?? new Float32Array(0),
    nonTrainable: nonTrainable ?? new Float32Array(0),
    optimizer: { type: header.optimizer.type, step: header.optimizer.step, slots },
  };
  if (header.extra !== undefined) state.extra = header.extra;
  return state;
}

function align4(n: number): number {
  return (n + 3) & ~3;
}

const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Copies `values` into `blob` at `offset` as float32 little-endian. */
function writeFloat32LE(blob: Uint8Array, offset: number, values: Float32Array): void {
  if (HOST_IS_LITTLE_ENDIAN) {
    blob.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), offset);
    return;
  }
  const view = new DataView(blob.buffer, blob.byteOffset + offset, values.byteLength);
  for (let i = 0; i < values.length; i++) view.setFloat32(4 * i, values[i] ?? 0, true);
}

/** Reads `length` float32 LE values at `offset` into a fresh (hence aligned) array. */
function readFloat32LE(bytes: Uint8Array, offset: number, length: number): Float32Array {
  const out = new Float32Array(length);
  if (HOST_IS_LITTLE_ENDIAN) {
    new Uint8Array(out.buffer).set(bytes.subarray(offset, offset + 4 * length));
    return out;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, 4 * length);
  for (let i = 0; i < length; i++) out[i] = view.getFloat32(4 * i, true);
  return out;
}
