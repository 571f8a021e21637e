// Incremental parser for the raw-TCP ring stream: bytes arrive in arbitrary pieces, frames leave
// whole. Two ways to feed it:
//   - pull (`nextBuffer` + `advance`): the socket reads straight into the region the parser
//     names next — the rest of a header, or the rest of a payload in storage the sink provides
//     (a pooled buffer). With net.Socket's `onread` this is zero-copy from the kernel into the
//     payload and allocates nothing per read;
//   - push (`push`): for 'data' events, copying each piece into those same regions.
// The header is assembled in one reused buffer and parsed into one reused FrameHeader.
// A sink may also take a payload through a small window instead (`payloadWindow`): the bytes land
// in the window read by read, the sink consumes them (`consumeWindow`), and the window is reused,
// so a payload that is summed rather than kept never needs storage of its own size.
import { CollectiveError } from '../../shared/errors.js';
import { emptyHeader, FRAME_HEADER_BYTES, readHeader, type FrameHeader } from './frame.js';

export interface FrameSink {
  /** Storage for the payload of `header` (exactly header.payloadBytes long). May throw CollectiveError to refuse the frame. */
  payloadTarget(header: FrameHeader): Uint8Array;
  /** A complete frame. `header` is reused after this returns; `payload` is the sink's own storage (empty for a windowed payload). */
  frame(header: FrameHeader, payload: Uint8Array): void;
  /** Optional: a window to read the payload of `header` through (asked before payloadTarget; undefined: use payloadTarget). */
  payloadWindow?(header: FrameHeader): Uint8Array | undefined;
  /**
   * Bytes [0, filled) of the window hold payload bytes [payloadOffset, payloadOffset + filled).
   * Returns how many leading bytes it consumed; the rest (fewer than 4: a split float) is moved to
   * the window's start and offered again with the next read. By the last byte of the payload all
   * must be consumed.
   */
  consumeWindow?(filled: number, payloadOffset: number): number;
}

const EMPTY = new Uint8Array(0);

export class FrameReader {
  private readonly headerBytes = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  private readonly header = emptyHeader();
  /** The region being filled: the header buffer or a payload. */
  private target: Uint8Array = this.headerBytes;
  private inPayload = false;
  private filled = 0;
  /** Windowed payload: the window, how many bytes of it are filled, and payload bytes received so far. */
  private window: Uint8Array | undefined;
  private windowFilled = 0;

  constructor(private readonly sink: FrameSink) {}

  /** Where the next bytes go; never empty. Valid until the next `advance`. */
  nextBuffer(): Uint8Array {
    const window = this.window;
    if (window === undefined) return this.target.subarray(this.filled);
    const room = Math.min(window.byteLength - this.windowFilled, this.header.payloadBytes - this.filled);
    return window.subarray(this.windowFilled, this.windowFilled + room);
  }

  /** Records that `count` bytes were written into the last `nextBuffer()`. Throws CollectiveError on a malformed stream. */
  advance(count: number): void {
    if (this.window !== undefined) {
      this.advanceWindow(count);
      return;
    }
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

  private advanceWindow(count: number): void {
    const window = this.window!;
    this.filled += count;
    this.windowFilled += count;
    const consumed = this.sink.consumeWindow!(this.windowFilled, this.filled - this.windowFilled);
    const left = this.windowFilled - consumed;
    if (left > 0) window.copyWithin(0, consumed, this.windowFilled);
    this.windowFilled = left;
    if (this.filled < this.header.payloadBytes) return;
    if (left !== 0) throw new CollectiveError(`${left} payload bytes left unconsumed at the end of a frame`);
    this.window = undefined;
    this.complete(EMPTY);
  }

  private onHeader(): void {
    readHeader(this.headerBytes, this.header);
    const window = this.header.payloadBytes === 0 ? undefined : this.sink.payloadWindow?.(this.header);
    if (window !== undefined) {
      if (window.byteLength < 4) throw new CollectiveError(`payload window of ${window.byteLength} bytes`);
      this.window = window;
      this.windowFilled = 0;
      this.inPayload = true;
      this.filled = 0;
      return;
    }
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
