// The reduction loop of the all-reduce: target[i] += source[i] over float32, run as WebAssembly
// SIMD (f32x4.add) on a small hand-assembled module, with a plain JavaScript loop as fallback.
//
// Why: the JavaScript loop costs ≈ 2 ns per float; staging both operands into wasm memory, adding
// four lanes at a time and copying the sum back costs well under half of that, copies included.
//
// Invariant: the result is bit-identical to the JavaScript loop. f32x4.add is the IEEE-754 float32
// sum of each lane, and JavaScript's float64 sum of two float32 values rounds to that same float32
// on store (float64 carries more than 2·24 + 2 bits, so the double rounding is exact). Elements are
// still added pairwise at the same index, so no summation order changes.
//
// In place: a buffer that lives in a WebAssembly memory with a receive window beside it (the
// trainer's gradient in its OptimizerArena, `reducibleFloat32Array` for anything else) gets an
// InPlaceReducer: the ring reads a reduce-scatter payload into the window and adds it from there
// straight into the buffer, with no staging copies (they cost about ten times the add itself).
//
// The module is built from the bytes below (no toolchain): it imports its memory ("env",
// "memory") and exports `add(targetByte, sourceByte, byteLength)`, which adds 64 bytes (16 floats)
// per iteration, so callers pass multiples of 64 bytes and finish the tail in JavaScript. One
// compiled module serves the staging kernel (a memory of MEMORY_PAGES pages) and every reducer.
import { name, OP, section, TYPE, unsignedLeb, VOID_BLOCK, wasmApi } from '../wasm/wasm-bytes.js';

/** Floats staged per operand per call; two operands fill the module's memory. */
const TILE_FLOATS = 32 * 1024;
const MEMORY_PAGES = (2 * TILE_FLOATS * 4) / 65536;
/** Below this many floats the staging copies cost more than they save. */
const MIN_SIMD_FLOATS = 64;
const FLOATS_PER_ITERATION = 16;

/** SIMD opcodes after the prefix, LEB128-encoded. */
const SIMD = { v128Load: [0x00], v128Store: [0x0b], f32x4Add: [0xe4, 0x01] } as const;
/** log2 of the 16-byte alignment hint of every v128 access. */
const ALIGN_16 = 0x04;

type AddFn = (targetByte: number, sourceByte: number, byteLength: number) => void;

interface SimdKernel {
  add: AddFn;
  /** View of the module's whole memory: target tile at 0, source tile at TILE_FLOATS. */
  memory: Float32Array;
}

const compiled: object | undefined = compile();
const kernel: SimdKernel | undefined = instantiate();
/** Reducers by the memory their buffers live in. */
const reducers = new WeakMap<ArrayBufferLike, InPlaceReducer>();
const PAGE_BYTES = 65536;
const MAX_PAGES = 65536;
/** Bytes of the receive window a reducible memory keeps beside its buffers. */
export const REDUCE_WINDOW_BYTES = 128 * 1024;

/**
 * Adds payload bytes that were read into `window` (a region of the same WebAssembly memory as the
 * buffers it serves) into a buffer of that memory, in place.
 */
export class InPlaceReducer {
  private readonly windowFloats: Float32Array;

  constructor(
    private readonly add: AddFn,
    private readonly memory: ArrayBuffer,
    /** Where payload bytes are read to; 16-byte aligned, REDUCE_WINDOW_BYTES long. */
    readonly window: Uint8Array,
  ) {
    this.windowFloats = new Float32Array(memory, window.byteOffset, window.byteLength / 4);
  }

  /** Whether `view` lives in this reducer's memory. */
  serves(view: Float32Array): boolean {
    return view.buffer === this.memory;
  }

  /** target[i] += window floats [0, target.length), same float32 rounding as addFloat32Into. */
  addWindowInto(target: Float32Array): void {
    const count = target.length;
    const vectorCount = count & ~(FLOATS_PER_ITERATION - 1);
    if (vectorCount > 0) this.add(target.byteOffset, this.window.byteOffset, vectorCount * 4);
    addPlain(target, this.windowFloats.subarray(0, count), vectorCount, count);
  }
}

/** The in-place reducer for a buffer, if it lives in a memory that has one. */
export function reducerFor(view: Float32Array): InPlaceReducer | undefined {
  return reducers.get(view.buffer);
}

/**
 * Gives `memory` a reducer whose window is bytes [windowByte, windowByte + REDUCE_WINDOW_BYTES)
 * (16-byte aligned, never handed out as a buffer). Returns false where SIMD is unavailable.
 */
export function attachReducer(memory: { buffer: ArrayBuffer }, windowByte: number): boolean {
  const wasm = wasmApi();
  if (compiled === undefined || wasm === undefined || windowByte % 16 !== 0) return false;
  if (windowByte + REDUCE_WINDOW_BYTES > memory.buffer.byteLength)
    throw new RangeError('reduce window outside the memory');
  const { exports } = new wasm.Instance(compiled, { env: { memory } });
  const window = new Uint8Array(memory.buffer, windowByte, REDUCE_WINDOW_BYTES);
  reducers.set(memory.buffer, new InPlaceReducer(exports['add'] as AddFn, memory.buffer, window));
  return true;
}

/** A zeroed Float32Array that the ring reduces in place (its own memory and window), or a plain one where that is unavailable. */
export function reducibleFloat32Array(floats: number): Float32Array {
  const wasm = wasmApi();
  const bufferBytes = Math.ceil((floats * 4) / 16) * 16;
  const pages = Math.ceil((bufferBytes + REDUCE_WINDOW_BYTES) / PAGE_BYTES);
  if (compiled === undefined || wasm === undefined || pages > MAX_PAGES) return new Float32Array(floats);
  let memory: { buffer: ArrayBuffer };
  try {
    memory = new wasm.Memory({ initial: pages, maximum: pages });
  } catch {
    return new Float32Array(floats);
  }
  attachReducer(memory, bufferBytes);
  return new Float32Array(memory.buffer, 0, floats);
}

/** Whether this runtime runs the SIMD path (false: every call takes the JavaScript loop). */
export const SIMD_ADD_AVAILABLE = kernel !== undefined;

/** target[i] += source[i] for every i < source.length, rounded to float32 like the plain loop. */
export function addFloat32Into(target: Float32Array, source: Float32Array): void {
  const length = source.length;
  if (target.length < length) throw new RangeError(`target holds ${target.length} floats, source ${length}`);
  if (kernel === undefined || length < MIN_SIMD_FLOATS) {
    addPlain(target, source, 0, length);
    return;
  }
  const { add, memory } = kernel;
  for (let start = 0; start < length; start += TILE_FLOATS) {
    const end = Math.min(start + TILE_FLOATS, length);
    const vectorEnd = start + ((end - start) & ~(FLOATS_PER_ITERATION - 1));
    if (vectorEnd > start) {
      const count = vectorEnd - start;
      memory.set(target.subarray(start, vectorEnd), 0);
      memory.set(source.subarray(start, vectorEnd), TILE_FLOATS);
      add(0, TILE_FLOATS * 4, count * 4);
      target.set(memory.subarray(0, count), start);
    }
    addPlain(target, source, vectorEnd, end);
  }
}

function addPlain(target: Float32Array, source: Float32Array, start: number, end: number): void {
  for (let i = start; i < end; i++) target[i] = target[i]! + source[i]!;
}

function compile(): object | undefined {
  const wasm = wasmApi();
  const bytes = moduleBytes();
  if (wasm === undefined || !wasm.validate(bytes)) return undefined;
  return new wasm.Module(bytes);
}

function instantiate(): SimdKernel | undefined {
  const wasm = wasmApi();
  if (wasm === undefined || compiled === undefined) return undefined;
  const memory = new wasm.Memory({ initial: MEMORY_PAGES, maximum: MEMORY_PAGES });
  const { exports } = new wasm.Instance(compiled, { env: { memory } });
  return { add: exports['add'] as AddFn, memory: new Float32Array(memory.buffer) };
}

/** The binary module; see the header for what it exports. */
function moduleBytes(): Uint8Array {
  const header = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  const types = [0x01, 0x60, 0x03, TYPE.i32, TYPE.i32, TYPE.i32, 0x00];
  const imports = [0x01, ...name('env'), ...name('memory'), 0x02, 0x00, 0x00]; // memory, min 0 pages
  const functions = [0x01, 0x00];
  const exports = [0x01, ...name('add'), 0x00, 0x00];
  const body = addBody();
  const code = [0x01, ...unsignedLeb(body.length), ...body];
  return new Uint8Array([
    ...header,
    ...section(1, types),
    ...section(2, imports),
    ...section(3, functions),
    ...section(7, exports),
    ...section(10, code),
  ]);
}

/** add(t, s, n): end = t + n; while (t < end) { 4 × (v128 at t += v128 at s); t += 64; s += 64 }. */
function addBody(): number[] {
  const [target, source, byteLength, end] = [0, 1, 2, 3];
  const get = (local: number): number[] => [OP.localGet, local];
  const set = (local: number): number[] => [OP.localSet, local];
  const memory = (op: readonly number[], offset: number): number[] => [OP.simdPrefix, ...op, ALIGN_16, offset];
  const lane = (offset: number): number[] => [
    ...[...get(target), ...get(target), ...memory(SIMD.v128Load, offset)],
    ...[...get(source), ...memory(SIMD.v128Load, offset), OP.simdPrefix, ...SIMD.f32x4Add],
    ...memory(SIMD.v128Store, offset),
  ];
  const advance = (local: number): number[] => [...get(local), OP.i32Const, 0xc0, 0x00, OP.i32Add, ...set(local)];
  const instructions: number[][] = [
    [0x01, 0x01, TYPE.i32], // locals: one i32 (end)
    [...get(target), ...get(byteLength), OP.i32Add, ...set(end)],
    [OP.block, VOID_BLOCK, ...get(target), ...get(end), OP.i32GeU, OP.brIf, 0],
    [OP.loop, VOID_BLOCK],
    ...[0, 16, 32, 48].map(lane),
    advance(target), // 0xc0 0x00: signed LEB128 of 64
    advance(source),
    [...get(target), ...get(end), OP.i32LtU, OP.brIf, 0],
    [OP.end, OP.end, OP.end], // loop, block, function
  ];
  return instructions.flat();
}
