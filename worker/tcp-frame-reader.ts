// Incremental parser for the raw-TCP ring stream: bytes arrive in arbitrary pieces, frames leave
// whole. The header is assembled in one reused buffer and parsed into one reused FrameHeader; the
// payload is copied straight into storage the sink provides (a pooled buffer), so steady-state
// parsing allocates no frame-sized memory.
import { CollectiveError } from '../shared/errors.js';
import { emptyHeader, FRAME_HEADER_BYTES, readHeader, type FrameHeader } from './tcp-frame.js';

export interface FrameSink {
  /** Storage for the payload of `header` (header.payloadBytes long). May throw CollectiveError to refuse the frame. */
  payloadTarget(header: FrameHeader): Uint8Array;
  /** A complete frame. `header` is reused after this returns; `payload` is the sink's own storage. */
  frame(header: FrameHeader, payload: Uint8Array): void;
}

const EMPTY = new Uint8Array(0);

export class FrameReader {
  private readonly headerBytes = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  private readonly header = emptyHeader();
  private headerFill = 0;
  /** Defined while a payload is being received. */
  private payload: Uint8Array | undefined;
  private payloadFill = 0;

  constructor(private readonly sink: FrameSink) {}

  /** Consumes `bytes` entirely; throws CollectiveError on a malformed stream (the caller drops the connection). */
  push(bytes: Uint8Array): void {
    let at = 0;
    while (at < bytes.length) {
      at = this.payload === undefined ? this.fillHeader(bytes, at) : this.fillPayload(bytes, at);
    }
  }

  private fillHeader(bytes: Uint8Array, at: number): number {
    const take = Math.min(FRAME_HEADER_BYTES - this.headerFill, bytes.length - at);
    this.headerBytes.set(bytes.subarray(at, at + take), this.headerFill);
    this.headerFill += take;
    if (this.headerFill === FRAME_HEADER_BYTES) {
      readHeader(this.headerBytes, this.header);
      const target = this.header.payloadBytes === 0 ? EMPTY : this.sink.payloadTarget(this.header);
      if (target.byteLength !== this.header.payloadBytes) {
        throw new CollectiveError(`payload storage of ${target.byteLength} bytes for a ${this.header.payloadBytes}-byte frame`);
      }
      this.payload = target;
      this.payloadFill = 0;
      if (target.byteLength === 0) this.complete();
    }
    return at + take;
  }

  private fillPayload(bytes: Uint8Array, at: number): number {
    const payload = this.payload!;
    const take = Math.min(payload.byteLength - this.payloadFill, bytes.length - at);
    payload.set(bytes.subarray(at, at + take), this.payloadFill);
    this.payloadFill += take;
    if (this.payloadFill === payload.byteLength) this.complete();
    return at + take;
  }

  private complete(): void {
    const payload = this.payload!;
    this.payload = undefined;
    this.headerFill = 0;
    this.sink.frame(this.header, payload);
  }
}
