// Incremental parser for the raw-TCP ring stream: bytes arrive in arbitrary pieces, frames leave
// whole. Two ways to feed it:
//   - pull (`nextBuffer` + `advance`): the socket reads straight into the region the parser
//     names next — the rest of a header, or the rest of a payload in storage the sink provides
//     (a pooled buffer). With net.Socket's `onread` this is zero-copy from the kernel into the
//     payload and allocates nothing per read;
//   - push (`push`): for 'data' events, copying each piece into those same regions.
// The header is assembled in one reused buffer and parsed into one reused FrameHeader.
import { CollectiveError } from '../../shared/errors.js';
import { emptyHeader, FRAME_HEADER_BYTES, readHeader, type FrameHeader } from './frame.js';

export interface FrameSink {
  /** Storage for the payload of `header` (exactly header.payloadBytes long). May throw CollectiveError to refuse the frame. */
  payloadTarget(header: FrameHeader): Uint8Array;
  /** A complete frame. `header` is reused after this returns; `payload` is the sink's own storage. */
  frame(header: FrameHeader, payload: Uint8Array): void;
}

const EMPTY = new Uint8Array(0);

export class FrameReader {
  private readonly headerBytes = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  private readonly header = emptyHeader();
  /** The region being filled: the header buffer or a payload. */
  private target: Uint8Array = this.headerBytes;
  private inPayload = false;
  private filled = 0;

  constructor(private readonly sink: FrameSink) {}

  /** Where the next bytes go; never empty. Valid until the next `advance`. */
  nextBuffer(): Uint8Array {
    return this.target.subarray(this.filled);
  }

  /** Records that `count` bytes were written into the last `nextBuffer()`. Throws CollectiveError on a malformed stream. */
  advance(count: number): void {
    this.filled += count;
    if (this.filled < this.target.byteLength) return;
    if (this.inPayload) this.complete(this.target);
    else this.onHeader();
  }

  /** Consumes `bytes` entirely (copying); throws CollectiveError on a malformed stream. */
  push(bytes: Uint8Array): void {
    let at = 0;
    while (at < bytes.length) {
      const region = this.nextBuffer();
      const take = Math.min(region.byteLength, bytes.length - at);
      region.set(bytes.subarray(at, at + take));
      at += take;
      this.advance(take);
    }
  }

  private onHeader(): void {
    readHeader(this.headerBytes, this.header);
    const payload = this.header.payloadBytes === 0 ? EMPTY : this.sink.payloadTarget(this.header);
    if (payload.byteLength !== this.header.payloadBytes) {
      throw new CollectiveError(
        `payload storage of ${payload.byteLength} bytes for a ${this.header.payloadBytes}-byte frame`,
      );
    }
    if (payload.byteLength === 0) {
      this.complete(payload);
      return;
    }
    this.target = payload;
    this.inPayload = true;
    this.filled = 0;
  }

  private complete(payload: Uint8Array): void {
    this.target = this.headerBytes;
    this.inPayload = false;
    this.filled = 0;
    this.sink.frame(this.header, payload);
  }
}
