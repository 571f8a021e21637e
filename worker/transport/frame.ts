// Wire form of the raw-TCP ring transport: a fixed 56-byte little-endian header, then the payload.
//
//   0  u32 magic "RTR1"     every frame starts with it, so a desynchronised stream is caught at once
//   4  u8  kind             HANDSHAKE (first frame of a connection) | DATA | REFUSE (receiver -> sender)
//   5  u8  codec            0 float32 | 1 fp16 | 2 bf16 (see wire-compression.ts)
//   6  u16 reserved
//   8  u32 generation
//  12  u32 senderRank
//  16  f64 step             a safe integer
//  24  u32 collective       sequence number within the step
//  28  u32 round
//  32  u32 segment
//  36  u32 chunk            index within the round's segment
//  40  u32 offset           element offset in the flat buffer
//  44  u32 length           elements in the payload
//  48  i32 scaleExponent    compressed payloads hold value·2^scaleExponent
//  52  u32 payloadBytes     bytes that follow the header (REFUSE: a UTF-8 reason)
//
// A connection whose first four bytes are not the magic is not ours, and the data port closes it
// (see ring-server.ts).
import { CollectiveError } from '../../shared/errors.js';
import type { WireCodec } from '../collectives/wire-compression.js';

export const FRAME_MAGIC = 0x31525452; // bytes "RTR1"
export const FRAME_HEADER_BYTES = 56;

export const FrameKind = { handshake: 1, data: 2, refuse: 3 } as const;
export type FrameKindCode = (typeof FrameKind)[keyof typeof FrameKind];

const CODEC_CODES: Readonly<Record<WireCodec, number>> = { none: 0, fp16: 1, bf16: 2 };
const CODEC_NAMES: readonly WireCodec[] = ['none', 'fp16', 'bf16'];

/** A parsed header. Readers reuse one instance per connection: copy what must outlive the frame. */
export interface FrameHeader {
  kind: number;
  codec: WireCodec;
  generation: number;
  senderRank: number;
  step: number;
  collective: number;
  round: number;
  segment: number;
  chunk: number;
  offset: number;
  length: number;
  scaleExponent: number;
  payloadBytes: number;
}

export function emptyHeader(): FrameHeader {
  return {
    kind: 0,
    codec: 'none',
    generation: 0,
    senderRank: 0,
    step: 0,
    collective: 0,
    round: 0,
    segment: 0,
    chunk: 0,
    offset: 0,
    length: 0,
    scaleExponent: 0,
    payloadBytes: 0,
  };
}

/** Writes `header` into the first FRAME_HEADER_BYTES of `target`. */
export function writeHeader(target: Buffer, header: FrameHeader): void {
  target.writeUInt32LE(FRAME_MAGIC, 0);
  target.writeUInt8(header.kind, 4);
  target.writeUInt8(CODEC_CODES[header.codec], 5);
  target.writeUInt16LE(0, 6);
  target.writeUInt32LE(header.generation, 8);
  target.writeUInt32LE(header.senderRank, 12);
  target.writeDoubleLE(header.step, 16);
  target.writeUInt32LE(header.collective, 24);
  target.writeUInt32LE(header.round, 28);
  target.writeUInt32LE(header.segment, 32);
  target.writeUInt32LE(header.chunk, 36);
  target.writeUInt32LE(header.offset, 40);
  target.writeUInt32LE(header.length, 44);
  target.writeInt32LE(header.scaleExponent, 48);
  target.writeUInt32LE(header.payloadBytes, 52);
}

/** Parses FRAME_HEADER_BYTES of `source` into `out`. Throws CollectiveError on a bad magic or codec. */
export function readHeader(source: Buffer, out: FrameHeader): void {
  const magic = source.readUInt32LE(0);
  if (magic !== FRAME_MAGIC) {
    throw new CollectiveError(
      `ring stream out of sync: frame starts with 0x${magic.toString(16)}, not the "RTR1" magic`,
    );
  }
  const codec = CODEC_NAMES[source.readUInt8(5)];
  if (codec === undefined) throw new CollectiveError(`ring frame names unknown codec ${source.readUInt8(5)}`);
  out.kind = source.readUInt8(4);
  out.codec = codec;
  out.generation = source.readUInt32LE(8);
  out.senderRank = source.readUInt32LE(12);
  out.step = source.readDoubleLE(16);
  out.collective = source.readUInt32LE(24);
  out.round = source.readUInt32LE(28);
  out.segment = source.readUInt32LE(32);
  out.chunk = source.readUInt32LE(36);
  out.offset = source.readUInt32LE(40);
  out.length = source.readUInt32LE(44);
  out.scaleExponent = source.readInt32LE(48);
  out.payloadBytes = source.readUInt32LE(52);
}

/** A standalone frame (header + payload) for control kinds: HANDSHAKE and REFUSE. */
export function controlFrame(kind: FrameKindCode, generation: number, senderRank: number, text = ''): Buffer {
  const payload = Buffer.from(text, 'utf8');
  const frame = Buffer.alloc(FRAME_HEADER_BYTES + payload.byteLength);
  writeHeader(frame, { ...emptyHeader(), kind, generation, senderRank, payloadBytes: payload.byteLength });
  payload.copy(frame, FRAME_HEADER_BYTES);
  return frame;
}
