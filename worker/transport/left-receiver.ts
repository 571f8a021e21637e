// The receiving half of a rank's raw-TCP ring link: this rank dials its LEFT neighbour's data
// port, sends a HANDSHAKE, and from then on reads DATA frames. Reads go through net.Socket's
// `onread` straight into the region the FrameReader names next (a header; the collective's own
// buffer where it placed the frame, see FrameInbox.place; else a pooled payload buffer), so
// steady-state receiving copies nothing in JavaScript and allocates no per-read Buffers. A frame
// placed for reduction is read through a 128 KiB window instead and added into the collective's
// buffer read by read: in place when the buffer's WebAssembly memory has a reducer (the trainer's
// gradient does), else from a scratch window through addFloat32Into. Each
// frame is checked (generation, sender, length), decoded when compressed, and handed to the
// collective's FrameInbox. Any violation, REFUSE frame or close is reported once
// through `onFailure`. With TLS the connection is mutual TLS (the neighbour's certificate must
// come from the job's CA); the HANDSHAKE carries the job token when there is one.
import * as net from 'node:net';
import * as tls from 'node:tls';
import { CollectiveError } from '../../shared/errors.js';
import type { JobSecurity } from '../../shared/security/job-security.js';
import { ringClientTls } from '../../shared/security/tls-credentials.js';
import type { FrameInbox, FrameKey, Placement } from '../collectives/frame-inbox.js';
import type { BufferPool } from './buffer-pool.js';
import { controlFrame, FrameKind, type FrameHeader } from './frame.js';
import { FrameReader } from './frame-reader.js';
import { decodeScaled, WIRE_BYTES_PER_ELEMENT } from '../collectives/wire-compression.js';
import { addFloat32Into, reducerFor, REDUCE_WINDOW_BYTES, type InPlaceReducer } from '../collectives/simd-add.js';

/** Largest payload one frame may announce; a bigger one is a corrupt stream. */
const MAX_PAYLOAD_BYTES = 1 << 30;
const MAX_REFUSAL_BYTES = 64 * 1024;

export interface LeftReceiverOptions {
  /** host:port of the left neighbour's data port. */
  address: string;
  rank: number;
  leftRank: number;
  generation: number;
  pool: BufferPool;
  inbox: FrameInbox;
  /** Bound on connecting (with retries while the neighbour comes up). */
  connectTimeoutMs: number;
  onFailure(error: CollectiveError): void;
  /** Mutual TLS and the token to present. @default none */
  security?: JobSecurity;
}

export class LeftReceiver {
  private socket: net.Socket | undefined;
  private readonly reader: FrameReader;
  /** Scale exponents of compressed frames delivered to the inbox, by frame key id. */
  private readonly exponents = new Map<string, number>();
  /** The placement the frame being read fills, if any. */
  private placed: Float32Array | undefined;
  /** For a reduce placement: the in-place reducer of the placed buffer's memory, if it has one. */
  private reducer: InPlaceReducer | undefined;
  /** Window for reduce placements whose buffer has no reducer (summed with addFloat32Into). */
  private readonly scratch = new Float32Array(REDUCE_WINDOW_BYTES / 4);
  private done = false;

  private constructor(private readonly options: LeftReceiverOptions) {
    this.reader = new FrameReader({
      payloadTarget: (header) => this.payloadTarget(header),
      frame: (header, payload) => this.onFrame(header, payload),
      payloadWindow: (header) => this.payloadWindow(header),
      consumeWindow: (filled, payloadOffset) => this.sumWindow(filled, payloadOffset),
    });
  }

  static async connect(options: LeftReceiverOptions): Promise<LeftReceiver> {
    const receiver = new LeftReceiver(options);
    receiver.socket = await receiver.dial();
    receiver.socket.write(controlFrame(FrameKind.handshake, options.generation, options.rank, options.security?.token));
    return receiver;
  }

  /** The scale exponent a compressed frame arrived with (once; undefined for float32 frames). */
  takeScaleExponent(key: FrameKey): number | undefined {
    const id = keyId(key);
    const exponent = this.exponents.get(id);
    this.exponents.delete(id);
    return exponent;
  }

  close(): void {
    this.done = true;
    this.socket?.destroy();
  }

  private async dial(): Promise<net.Socket> {
    const { address, connectTimeoutMs, leftRank } = this.options;
    const deadline = Date.now() + connectTimeoutMs;
    // Neighbours start at about the same time: retry quickly while the left one comes up.
    for (let delayMs = 50; ; delayMs = Math.min(delayMs * 2, 1_000)) {
      try {
        return await this.connectOnce(Math.max(1, deadline - Date.now()));
      } catch (cause) {
        if (Date.now() + delayMs >= deadline) {
          throw new CollectiveError(
            `cannot reach left neighbour rank ${leftRank} at ${address} within ${connectTimeoutMs} ms`,
            { cause },
          );
        }
        await new Promise((resolve) => setTimeout(resolve, delayMs));
      }
    }
  }

  private connectOnce(timeoutMs: number): Promise<net.Socket> {
    const { host, port } = splitAddress(this.options.address);
    const material = this.options.security?.tls;
    const onread = { buffer: () => this.reader.nextBuffer(), callback: (bytes: number) => this.onBytes(bytes) };
    return new Promise<net.Socket>((resolve, reject) => {
      // tls.connect reads through `onread` too (into the same regions, after decryption).
      const socket =
        material === undefined
          ? net.connect({ host, port, noDelay: true, onread })
          : tls.connect(withOnread({ ...ringClientTls(material), host, port }, onread));
      socket.setNoDelay(true);
      const timer = setTimeout(() => socket.destroy(new Error(`connect timed out after ${timeoutMs} ms`)), timeoutMs);
      socket.once('error', (error: Error) => {
        clearTimeout(timer);
        reject(error);
      });
      socket.once(material === undefined ? 'connect' : 'secureConnect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        socket.on('error', () => undefined); // 'close' follows and reports it
        socket.once('close', () => this.fail(`closed its ring connection (generation ${this.options.generation})`));
        resolve(socket);
      });
    });
  }

  /** onread callback: `bytes` landed in the last nextBuffer(). Returning false stops reading. */
  private onBytes(bytes: number): boolean {
    if (this.done) return false;
    try {
      this.reader.advance(bytes);
      return true;
    } catch (error) {
      this.failWith(error instanceof CollectiveError ? error : new CollectiveError(String(error), { cause: error }));
      return false;
    }
  }

  /**
   * Asked first for every frame with a payload: checks it, claims its placement, and for a reduce
   * placement names the window its bytes are read through (the buffer memory's own window, so
   * sumWindow adds in place; else the scratch window).
   */
  private payloadWindow(header: FrameHeader): Uint8Array | undefined {
    if (header.kind === FrameKind.refuse) return undefined;
    const problem = frameProblem(header, this.options.generation, this.options.leftRank);
    if (problem !== undefined)
      throw new CollectiveError(`frame from left neighbour rank ${this.options.leftRank} refused: ${problem}`);
    const placement = header.codec === 'none' ? this.options.inbox.claimPlacement(keyOf(header)) : undefined;
    if (placement === undefined) return undefined;
    this.checkPlacement(header, placement);
    this.placed = placement.target;
    if (placement.reduce !== true) return undefined;
    this.reducer = reducerFor(placement.target);
    return this.reducer?.window ?? new Uint8Array(this.scratch.buffer);
  }

  /** Storage for a payload not read through a window: the placed region, a refusal's text, or a pooled buffer. */
  private payloadTarget(header: FrameHeader): Uint8Array {
    if (header.kind === FrameKind.refuse) {
      if (header.payloadBytes <= MAX_REFUSAL_BYTES) return new Uint8Array(header.payloadBytes);
      throw new CollectiveError(
        `frame from left neighbour rank ${this.options.leftRank} refused: ${frameProblem(header, this.options.generation, this.options.leftRank)}`,
      );
    }
    const target = this.placed;
    if (target === undefined) return new Uint8Array(this.options.pool.take(header.payloadBytes));
    return new Uint8Array(target.buffer, target.byteOffset, target.byteLength);
  }

  /** Adds the whole floats in the window (payload bytes from `payloadOffset`) into the placed region; returns the bytes consumed. */
  private sumWindow(filled: number, payloadOffset: number): number {
    const floats = filled >>> 2;
    if (floats === 0) return 0;
    const start = payloadOffset >>> 2;
    const target = this.placed!.subarray(start, start + floats);
    if (this.reducer !== undefined) this.reducer.addWindowInto(target);
    else addFloat32Into(target, this.scratch.subarray(0, floats));
    return floats * 4;
  }

  /** A placed frame must cover exactly the region this rank expects for it. */
  private checkPlacement(header: FrameHeader, { offset, target }: Placement): void {
    if (header.offset === offset && header.length === target.length) return;
    throw new CollectiveError(
      `frame step ${header.step} collective ${header.collective} round ${header.round} chunk ${header.chunk} from left neighbour rank ${this.options.leftRank} covers elements [${header.offset}, ${header.offset + header.length}), this rank expects [${offset}, ${offset + target.length}); buffer lengths differ across ranks`,
    );
  }

  private onFrame(header: FrameHeader, payload: Uint8Array): void {
    if (header.kind === FrameKind.refuse) {
      this.fail(`refused the ring connection: ${Buffer.from(payload).toString('utf8')}`);
      return;
    }
    if (header.kind !== FrameKind.data)
      throw new CollectiveError(`left neighbour rank ${this.options.leftRank} sent a frame of kind ${header.kind}`);
    const { pool, inbox } = this.options;
    const key = keyOf(header);
    let values: Float32Array;
    if (header.codec === 'none') values = this.placed ?? new Float32Array(payload.buffer, 0, header.length);
    else {
      values = new Float32Array(pool.take(header.length * 4));
      decodeScaled(new Uint16Array(payload.buffer, 0, header.length), header.codec, header.scaleExponent, values);
      pool.give(payload.buffer as ArrayBuffer);
      this.exponents.set(keyId(key), header.scaleExponent);
    }
    this.placed = undefined;
    this.reducer = undefined;
    inbox.deliver(key, values);
  }

  private fail(why: string): void {
    this.failWith(new CollectiveError(`left neighbour rank ${this.options.leftRank} ${why}`));
  }

  private failWith(error: CollectiveError): void {
    if (this.done) return;
    this.done = true;
    this.options.onFailure(error);
  }
}

/** Why a frame from the left neighbour cannot be accepted, or undefined. */
function frameProblem(header: FrameHeader, generation: number, leftRank: number): string | undefined {
  if (header.kind !== FrameKind.data) return `unexpected frame kind ${header.kind}`;
  if (header.generation !== generation) return `generation ${header.generation}, expected ${generation}`;
  if (header.senderRank !== leftRank) return `sender rank ${header.senderRank}, expected ${leftRank}`;
  if (header.payloadBytes !== header.length * WIRE_BYTES_PER_ELEMENT[header.codec]) {
    return `length ${header.length} ${header.codec === 'none' ? 'floats' : `${header.codec} values`} but payload of ${header.payloadBytes} bytes`;
  }
  if (header.payloadBytes > MAX_PAYLOAD_BYTES)
    return `payload of ${header.payloadBytes} bytes exceeds ${MAX_PAYLOAD_BYTES}`;
  return undefined;
}

function keyOf(header: FrameHeader): FrameKey {
  return { step: header.step, collective: header.collective, round: header.round, chunk: header.chunk };
}

function keyId(key: FrameKey): string {
  return `${key.step}/${key.collective}/${key.round}/${key.chunk}`;
}

/** "host:port" or "[v6]:port". */
export function splitAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  const port = Number(address.slice(colon + 1));
  if (colon <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new CollectiveError(`ring neighbour address "${address}" is not host:port`);
  }
  return { host: address.slice(0, colon).replace(/^\[(.*)\]$/, '$1'), port };
}

/** tls.connect takes `onread` as net.connect does (Node's documentation), though @types/node omits it. */
function withOnread(options: tls.ConnectionOptions, onread: net.OnReadOpts): tls.ConnectionOptions {
  return Object.assign(options, { onread });
}
