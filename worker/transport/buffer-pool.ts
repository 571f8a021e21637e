// Reusable payload storage for the raw-TCP ring: frames of a collective have a handful of sizes
// (full chunks plus segment tails), so buffers are recycled by exact byte length instead of
// allocated per frame. Every buffer starts at offset 0 of its own ArrayBuffer, so Float32Array
// and Uint16Array views of it are always aligned.

/** Upper bound on the bytes a pool keeps for reuse; buffers given back beyond it are left to the GC. */
const DEFAULT_RETAIN_BYTES = 256 * 1024 * 1024;

export class BufferPool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private retainedBytes = 0;

  constructor(private readonly retainLimitBytes = DEFAULT_RETAIN_BYTES) {}

  /** Bytes currently held for reuse. */
  get retained(): number {
    return this.retainedBytes;
  }

  /** An ArrayBuffer of exactly `byteLength` bytes (contents undefined). */
  take(byteLength: number): ArrayBuffer {
    const list = this.free.get(byteLength);
    const reused = list?.pop();
    if (reused !== undefined) {
      this.retainedBytes -= byteLength;
      return reused;
    }
    return new ArrayBuffer(byteLength);
  }

  /** Returns a buffer obtained from `take`; the caller must hold no view of it afterwards. */
  give(buffer: ArrayBuffer): void {
    if (buffer.byteLength === 0 || this.retainedBytes + buffer.byteLength > this.retainLimitBytes) return;
    let list = this.free.get(buffer.byteLength);
    if (list === undefined) {
      list = [];
      this.free.set(buffer.byteLength, list);
    }
    list.push(buffer);
    this.retainedBytes += buffer.byteLength;
  }

  clear(): void {
    this.free.clear();
    this.retainedBytes = 0;
  }
}
