// Ring all-reduce over an injected link: the pure core of the data plane (no I/O of its own).
//
//        ┌──────► rank 1 ──────┐
//        │                      ▼
//     rank 0                 rank 2        rank r sends to (r + 1) % N
//        ▲                      │          and receives from (r − 1 + N) % N
//        └────── rank 3 ◄───────┘
//
// The flat buffer of L floats is cut into N contiguous segments. In round k (0 ≤ k ≤ 2N−3)
// rank r sends segment (r − k) mod N and receives segment (r − k − 1) mod N:
//   rounds 0..N−2   reduce-scatter: the received chunk is ADDED into the buffer;
//   rounds N−1..2N−3 all-gather:   the received chunk is COPIED over the buffer.
// After reduce-scatter rank r owns the full sum of segment (r + 1) mod N. Each segment is
// summed along exactly one path and then copied everywhere, so every rank ends bit-identical.
//
// Cost: each rank sends (and receives) 2·(N−1)/N·L·4 bytes — bandwidth-optimal, but 2(N−1)
// latency hops, so tiny buffers are latency-bound.
//
// Segments travel as chunks of `chunkElems` floats and are pipelined: chunk c of round k+1
// leaves as soon as chunk c of round k has arrived and been reduced, not after the whole segment.
//
// What a link may rely on: a chunk this rank sent is not written again by it until that chunk's
// all-gather value arrives, and that value exists only after the right neighbour has read the
// sent chunk. So a link may send views of the buffer, and may receive all-gather chunks straight
// into the buffer (`placeAt`), as long as nothing is in flight once the collective returns. And
// the segment received in a reduce-scatter round k is first sent in round k + 1, so a link may add
// a reduce-scatter chunk into the buffer while its bytes arrive (`reduceAt`).
import { CollectiveError } from '../../shared/errors.js';
import { addFloat32Into } from './simd-add.js';

export interface RingChunk {
  round: number;
  segment: number;
  /** Index of this chunk within its segment. */
  chunk: number;
  /** Element offset of `data` within the flat buffer. */
  offset: number;
  data: Float32Array;
}

export interface RingLink {
  /** Hands a chunk to the right neighbour; resolves once the transport accepted it (backpressure). `data` is a view of the buffer: see the header for when it is written again. */
  send(chunk: RingChunk): Promise<void>;
  /** Resolves with the payload the left neighbour sent for (round, chunk index within that round's segment). */
  receive(round: number, chunk: number): Promise<Float32Array>;
  /** Optional: lets the payload of an all-gather (round, chunk) land in `target`, elements [offset, offset + target.length) of the buffer; `receive` may then resolve with `target` itself. */
  placeAt?(round: number, chunk: number, offset: number, target: Float32Array): void;
  /**
   * Optional: lets the payload of a reduce-scatter (round, chunk) be ADDED into `target` (elements
   * [offset, offset + target.length) of the buffer) piece by piece as its bytes arrive; `receive`
   * may then resolve with `target` itself, already summed. Adding element by element is the same
   * float32 sum whatever the pieces, so the bits do not change; what changes is that the add runs
   * between socket reads, on bytes still in cache, instead of holding the thread for a whole chunk.
   */
  reduceAt?(round: number, chunk: number, offset: number, target: Float32Array): void;
}

export interface SegmentBounds {
  start: number;
  end: number;
}

/** Segment bounds: split L elements into N contiguous segments (sizes differ by at most 1; some may be empty when L < N). */
export function segmentBounds(length: number, worldSize: number): SegmentBounds[] {
  const base = Math.floor(length / worldSize);
  const remainder = length % worldSize;
  const bounds: SegmentBounds[] = [];
  let start = 0;
  for (let segment = 0; segment < worldSize; segment++) {
    const end = start + base + (segment < remainder ? 1 : 0);
    bounds.push({ start, end });
    start = end;
  }
  return bounds;
}

/** A segment is cut into at most this many pipelined chunks: large buffers get larger chunks. */
export const MAX_CHUNKS_PER_SEGMENT = 8;
/** …but no chunk grows past this (one frame's payload, and the send queue's unit). */
export const MAX_CHUNK_ELEMS = (8 * 1024 * 1024) / 4;

/**
 * Chunk length for a buffer of `length` floats: `chunkElems` (allreduce.chunkBytes) while a
 * segment holds at most MAX_CHUNKS_PER_SEGMENT of them, else segment / MAX_CHUNKS_PER_SEGMENT
 * (at most MAX_CHUNK_ELEMS). Fewer, larger frames cost less per byte where the segment is long
 * enough to keep the pipeline full. Chunking never changes which ranks add an element, or in what
 * order, so every chunk length gives the same bits. Every rank computes the same value.
 */
export function pipelineChunkElems(length: number, worldSize: number, chunkElems: number): number {
  const segmentElems = Math.ceil(length / Math.max(1, worldSize));
  const spread = Math.ceil(segmentElems / MAX_CHUNKS_PER_SEGMENT);
  return Math.max(chunkElems, Math.min(spread, MAX_CHUNK_ELEMS));
}

/** Nominal bytes each rank sends for one all-reduce of `length` floats: 2(N−1)/N·L·4. */
export function allReduceBytesPerRank(length: number, worldSize: number): number {
  return worldSize <= 1 ? 0 : ((2 * (worldSize - 1)) / worldSize) * length * 4;
}

/** In-place sum all-reduce of `buffer` over the ring. Every rank ends with bit-identical values. */
export async function ringAllReduce(
  buffer: Float32Array,
  rank: number,
  worldSize: number,
  link: RingLink,
  chunkElems: number,
): Promise<void> {
  checkArguments(rank, worldSize, chunkElems);
  if (worldSize === 1) return;
  const bounds = segmentBounds(buffer.length, worldSize);
  const lastRound = 2 * worldSize - 3;
  const segmentOf = (round: number): SegmentBounds => bounds[mod(rank - round, worldSize)]!;
  // Round k receives the segment that round k + 1 sends. Safe to land in the buffer: a segment is
  // first sent in the round after the one that receives it (see the header).
  type Place = (round: number, chunk: number, offset: number, target: Float32Array) => void;
  const placeRounds = (first: number, last: number, place: Place): void => {
    for (let round = first; round <= last; round++) {
      const { start, end } = segmentOf(round + 1);
      for (let chunk = 0, offset = start; offset < end; chunk++, offset += chunkElems) {
        place(round, chunk, offset, buffer.subarray(offset, Math.min(offset + chunkElems, end)));
      }
    }
  };
  if (link.reduceAt !== undefined)
    placeRounds(0, worldSize - 2, (round, chunk, offset, target) => link.reduceAt!(round, chunk, offset, target));
  if (link.placeAt !== undefined)
    placeRounds(worldSize - 1, lastRound, (round, chunk, offset, target) =>
      link.placeAt!(round, chunk, offset, target),
    );

  for (let round = 0; round <= lastRound; round++) {
    const segment = mod(rank - round, worldSize);
    const { start, end } = segmentOf(round);
    for (let chunk = 0, offset = start; offset < end; chunk++, offset += chunkElems) {
      const chunkEnd = Math.min(offset + chunkElems, end);
      // Segment sent in round k is the one received in round k−1: reduce it before forwarding.
      if (round > 0) await receiveInto(buffer, link, round - 1, chunk, offset, chunkEnd, worldSize);
      await link.send({ round, segment, chunk, offset, data: buffer.subarray(offset, chunkEnd) });
    }
  }
  // The last round's segment is received but never forwarded.
  const { start, end } = segmentOf(lastRound + 1);
  for (let chunk = 0, offset = start; offset < end; chunk++, offset += chunkElems) {
    await receiveInto(buffer, link, lastRound, chunk, offset, Math.min(offset + chunkElems, end), worldSize);
  }
}

async function receiveInto(
  buffer: Float32Array,
  link: RingLink,
  round: number,
  chunk: number,
  offset: number,
  end: number,
  worldSize: number,
): Promise<void> {
  const data = await link.receive(round, chunk);
  if (data.length !== end - offset) {
    throw new CollectiveError(
      `round ${round} chunk ${chunk}: received ${data.length} floats, expected ${end - offset}; buffer lengths differ across ranks`,
    );
  }
  // A payload that is already the buffer's own region was summed (reduceAt) or placed (placeAt) there.
  if (isAt(data, buffer, offset)) return;
  if (round <= worldSize - 2) addInto(buffer, offset, data);
  else buffer.set(data, offset);
}

/** Whether `data` already is elements [offset, offset + data.length) of `buffer` (a placed receive). */
function isAt(data: Float32Array, buffer: Float32Array, offset: number): boolean {
  return data.buffer === buffer.buffer && data.byteOffset === buffer.byteOffset + offset * 4;
}

/** buffer[offset + i] += data[i]; the only arithmetic of the all-reduce (wasm SIMD, same float32 rounding). */
function addInto(buffer: Float32Array, offset: number, data: Float32Array): void {
  addFloat32Into(buffer.subarray(offset, offset + data.length), data);
}

/** A valid place in a ring of `worldSize`, or a CollectiveError; every transport checks this first. */
export function assertRingPosition(rank: number, worldSize: number): void {
  if (!Number.isInteger(worldSize) || worldSize < 1) {
    throw new CollectiveError(`worldSize must be a positive integer, got ${worldSize}`);
  }
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
    throw new CollectiveError(`rank must be an integer in [0, ${worldSize}), got ${rank}`);
  }
}

function checkArguments(rank: number, worldSize: number, chunkElems: number): void {
  assertRingPosition(rank, worldSize);
  if (!Number.isInteger(chunkElems) || chunkElems < 1) {
    throw new CollectiveError(`chunkElems must be a positive integer, got ${chunkElems}`);
  }
}

function mod(value: number, modulus: number): number {
  return ((value % modulus) + modulus) % modulus;
}
