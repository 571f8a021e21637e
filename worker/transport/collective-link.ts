// One collective's view of the raw-TCP transport, as the pure algorithms (ringAllReduce,
// allGatherSum) see it: `send` queues a chunk to the right neighbour and `receive` takes the left
// neighbour's payload from the inbox. A received payload goes back to the pool at the next call:
// the algorithms are done with it by then.
//
// Float32 chunks are sent without a copy, as views of the algorithm's buffer. That is safe
// because neither algorithm writes a region it has sent until that region's all-gather value
// arrives, which needs the right neighbour to have read the bytes (see ring-allreduce.ts), and
// because the communicator waits for every write before the collective returns. Compressed
// chunks are encoded into pooled buffers, given back once written. By the same rule, float32
// all-gather chunks are read straight into the buffer (`placeAt`): no pooled payload, no copy;
// and float32 reduce-scatter chunks are added into the buffer as their bytes arrive (`reduceAt`).
//
// With fp16/bf16 compression, two rules keep every rank bit-identical:
//   - the owner of a fully reduced segment (all-gather round N−1) replaces its own values with
//     exactly what it sends, decoded;
//   - a forwarded all-gather chunk is re-encoded with the scale exponent it arrived with, which
//     reproduces the same bytes (see wire-compression.ts).
import { CollectiveError } from '../../shared/errors.js';
import type { FrameInbox, Placement } from '../collectives/frame-inbox.js';
import type { RingChunk, RingLink } from '../collectives/ring-allreduce.js';
import type { BufferPool } from './buffer-pool.js';
import type { FrameHeader } from './frame.js';
import type { LeftReceiver } from './left-receiver.js';
import {
  chooseScaleExponent,
  decodeScaled,
  encodeScaled,
  WIRE_BYTES_PER_ELEMENT,
  type NarrowCodec,
  type WireCodec,
} from '../collectives/wire-compression.js';

/** Header fields a collective chooses; the communicator adds kind, generation, sender and size. */
export type DataFields = Omit<FrameHeader, 'kind' | 'generation' | 'senderRank' | 'payloadBytes'>;
/**
 * Queues a DATA frame to the right neighbour: a header built from `fields`, then `payload` as is
 * (not copied). `written` runs once the write has completed or failed. Resolves when more may be
 * queued (backpressure).
 */
export type FrameWriter = (fields: DataFields, payload: Uint8Array, written?: () => void) => Promise<void>;

export interface CollectiveContext {
  step: number;
  collective: number;
  worldSize: number;
  codec: WireCodec;
  /** Bound on waiting for any one chunk. */
  timeoutMs: number;
}

export class CollectiveLink implements RingLink {
  private lastTaken: Float32Array | undefined;
  /** Regions of the algorithm's buffer placed for receiving and not yet received into. */
  private readonly placed = new Set<Float32Array>();
  /** Scale exponent each all-gather chunk arrived with, by chunk index. */
  private readonly gatherExponents = new Map<number, number>();

  constructor(
    private readonly write: FrameWriter,
    private readonly inbox: FrameInbox,
    private readonly left: LeftReceiver,
    private readonly pool: BufferPool,
    private readonly at: CollectiveContext,
  ) {}

  async send(chunk: RingChunk): Promise<void> {
    this.release();
    const { step, collective, codec } = this.at;
    const data = chunk.data;
    const fields: DataFields = {
      codec,
      step,
      collective,
      round: chunk.round,
      segment: chunk.segment,
      chunk: chunk.chunk,
      offset: chunk.offset,
      length: data.length,
      scaleExponent: 0,
    };
    if (codec === 'none') {
      await this.write(fields, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      return;
    }
    fields.scaleExponent = this.exponentFor(chunk, codec);
    const staged = this.pool.take(data.length * WIRE_BYTES_PER_ELEMENT[codec]);
    const wire = new Uint16Array(staged);
    encodeScaled(data, codec, fields.scaleExponent, wire);
    if (chunk.round === this.at.worldSize - 1) decodeScaled(wire, codec, fields.scaleExponent, data);
    await this.write(fields, new Uint8Array(staged), () => this.pool.give(staged));
  }

  placeAt(round: number, chunk: number, offset: number, target: Float32Array): void {
    this.place(round, chunk, { offset, target });
  }

  reduceAt(round: number, chunk: number, offset: number, target: Float32Array): void {
    this.place(round, chunk, { offset, target, reduce: true });
  }

  async receive(round: number, chunk: number): Promise<Float32Array> {
    this.release();
    const key = { step: this.at.step, collective: this.at.collective, round, chunk };
    const payload = await this.inbox.take(key, this.at.timeoutMs);
    // A placed payload is the algorithm's own buffer, never the pool's.
    if (!this.placed.delete(payload)) this.lastTaken = payload;
    const exponent = this.left.takeScaleExponent(key);
    if (this.at.codec !== 'none' && round >= this.at.worldSize - 1) {
      if (exponent === undefined) {
        throw new CollectiveError(
          `round ${round} chunk ${chunk} arrived uncompressed while this rank uses ${this.at.codec}; ranks disagree on allreduce.compression`,
        );
      }
      this.gatherExponents.set(chunk, exponent);
    }
    return payload;
  }

  /** Ends the collective: the last payload goes back to the pool, and no placement stays behind. */
  close(): void {
    this.release();
    if (this.placed.size > 0) this.inbox.clearPlacements();
    this.placed.clear();
  }

  private place(round: number, chunk: number, placement: Placement): void {
    if (this.at.codec !== 'none') return;
    this.inbox.place({ step: this.at.step, collective: this.at.collective, round, chunk }, placement);
    this.placed.add(placement.target);
  }

  /** Gives the last received payload back to the pool. */
  private release(): void {
    if (this.lastTaken === undefined) return;
    this.pool.give(this.lastTaken.buffer as ArrayBuffer);
    this.lastTaken = undefined;
  }

  /** Fresh for reduce-scatter and the owner's all-gather send; inherited when forwarding. */
  private exponentFor(chunk: RingChunk, codec: NarrowCodec): number {
    if (chunk.round < this.at.worldSize) return chooseScaleExponent(chunk.data, codec);
    const exponent = this.gatherExponents.get(chunk.chunk);
    if (exponent === undefined)
      throw new CollectiveError(
        `no scale exponent recorded for all-gather chunk ${chunk.chunk} of round ${chunk.round - 1}`,
      );
    return exponent;
  }
}
