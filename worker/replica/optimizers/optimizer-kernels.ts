// The optimizer update as WebAssembly SIMD (f64x2), over buffers that live in one WebAssembly
// memory (an OptimizerArena): the trainer allocates its parameter and gradient buffers there, the
// optimizer its slots, so an update reads and writes them in place with no staging copies. The
// memory also holds the ring's receive window (simd-add.ts), so the gradient is reduced in place.
//
// Why: the JavaScript Adam loop over 269k parameters took 3.3 ms of a 17 ms step at N = 1 (issue
// 14), bound by its float64 divide and square root one element at a time; f64x2 does two per
// instruction and the loop carries no bounds checks.
//
// Invariant: bit-identical to the JavaScript loops in adam.ts and sgd.ts, which stay the reference
// (and the path for buffers outside an arena). Each element is computed with the same float64
// operations in the same order: f64x2 add/sub/mul/div/sqrt are the IEEE-754 correctly rounded
// operations JavaScript's numbers use, f64x2.promote_low_f32x4 is exact, and
// f32x4.demote_f64x2_zero rounds to nearest-even like a Float32Array store. No fused
// multiply-add exists in this instruction set, so none can creep in.
//
// Each function handles two floats per iteration; callers pass an even count and finish an odd
// last element in JavaScript.
import { functionBody, name, OP, section, TYPE, VOID_BLOCK, wasmApi } from '../../wasm/wasm-bytes.js';
import { attachReducer, REDUCE_WINDOW_BYTES } from '../../collectives/simd-add.js';

const PAGE_BYTES = 65536;
/** Every buffer starts on a 16-byte boundary. */
const ALIGN_FLOATS = 4;
/** WebAssembly memories (wasm32) stop at 4 GiB; larger arenas fall back to JavaScript buffers. */
const MAX_PAGES = 65536;

/** Adam: p, g, m, v (byte offsets), float count; b1, b2, 1−b1, 1−b2, lr·wd, step size, 1/(1−b2^t), ε. */
type AdamFn = (...args: number[]) => void;
/** Momentum / Nesterov: p, g, velocity (byte offsets), float count; lr, wd, μ, nesterov (0/1). */
type MomentumFn = (...args: number[]) => void;

interface Kernels {
  adam: AdamFn;
  momentum: MomentumFn;
}

/**
 * One WebAssembly memory holding the float buffers of a training step, handed out as
 * Float32Array views (16-byte aligned, fixed size: the memory never grows, so views never detach).
 */
export class OptimizerArena {
  private nextFloat = 0;

  private constructor(
    readonly kernels: Kernels,
    private readonly buffer: ArrayBuffer,
    private readonly capacityFloats: number,
  ) {}

  /**
   * An arena for buffers of the given float counts (each rounded up to the alignment), or
   * undefined where WebAssembly SIMD is missing or the total would exceed a wasm32 memory.
   */
  static create(bufferFloats: readonly number[]): OptimizerArena | undefined {
    const floats = bufferFloats.reduce((sum, n) => sum + alignUp(n), 0);
    // After the buffers, the ring's receive window: the gradient is then reduced in place.
    const pages = Math.max(1, Math.ceil((floats * 4 + REDUCE_WINDOW_BYTES) / PAGE_BYTES));
    const wasm = wasmApi();
    if (wasm === undefined || pages > MAX_PAGES) return undefined;
    const bytes = moduleBytes();
    if (!wasm.validate(bytes)) return undefined;
    let memory: { buffer: ArrayBuffer };
    try {
      memory = new wasm.Memory({ initial: pages, maximum: pages });
    } catch {
      return undefined; // the runtime could not reserve it: the JavaScript loops still work
    }
    const { exports } = new wasm.Instance(new wasm.Module(bytes), { env: { memory } });
    const kernels = { adam: exports['adam'] as AdamFn, momentum: exports['momentum'] as MomentumFn };
    attachReducer(memory, floats * 4);
    return new OptimizerArena(kernels, memory.buffer, floats);
  }

  /** A zeroed buffer of `floats` floats inside the arena. */
  allocate(floats: number): Float32Array {
    const start = this.nextFloat;
    if (start + floats > this.capacityFloats)
      throw new RangeError(`optimizer arena: ${floats} floats do not fit (${this.capacityFloats - start} left)`);
    this.nextFloat = start + alignUp(floats);
    return new Float32Array(this.buffer, start * 4, floats);
  }

  /** The byte offset of `view` in the arena, or -1 when it lives elsewhere. */
  offsetOf(view: Float32Array): number {
    return view.buffer === this.buffer ? view.byteOffset : -1;
  }
}

function alignUp(floats: number): number {
  return Math.ceil(floats / ALIGN_FLOATS) * ALIGN_FLOATS;
}

/** SIMD opcodes after the 0xfd prefix, LEB128-encoded. */
const SIMD = {
  load64Zero: [0x5d],
  store64Lane: [0x5b],
  f64x2Splat: [0x14],
  demote: [0x5e],
  promote: [0x5f],
  sqrt: [0xef, 0x01],
  add: [0xf0, 0x01],
  sub: [0xf1, 0x01],
  mul: [0xf2, 0x01],
  div: [0xf3, 0x01],
} as const;
/** Memory argument: log2 alignment 3 (8 bytes), offset 0. */
const MEMARG_8 = [0x03, 0x00];

/** Instruction-building helpers over local indices. */
const get = (local: number): number[] => [OP.localGet, local];
const set = (local: number): number[] => [OP.localSet, local];
const simd = (op: readonly number[]): number[] => [OP.simdPrefix, ...op];
/** Two float32 at the byte address in `local`, widened to f64x2. */
const loadPair = (local: number): number[] => [
  ...get(local),
  ...simd(SIMD.load64Zero),
  ...MEMARG_8,
  ...simd(SIMD.promote),
];
/** Rounds the f64x2 on the stack to float32 and stores both at the byte address in `local` (pushed first). */
const storePair = (local: number, value: readonly number[]): number[] => [
  ...get(local),
  ...value,
  ...simd(SIMD.demote),
  ...simd(SIMD.store64Lane),
  ...MEMARG_8,
  0x00,
];
const binary = (op: readonly number[], a: readonly number[], b: readonly number[]): number[] => [
  ...a,
  ...b,
  ...simd(op),
];
const splatInto = (scalar: number, vector: number): number[] => [
  ...get(scalar),
  ...simd(SIMD.f64x2Splat),
  ...set(vector),
];

/**
 * The loop shared by both kernels: `end = pointers[0] + byteCount`; while below it, run `body`
 * and advance every pointer by 8 bytes (two floats).
 */
function pairLoop(pointers: readonly number[], byteCount: number, end: number, body: readonly number[]): number[] {
  const first = pointers[0] as number;
  const advance = pointers.flatMap((p) => [...get(p), OP.i32Const, 0x08, OP.i32Add, ...set(p)]);
  return [
    ...get(first),
    ...get(byteCount),
    OP.i32Add,
    ...set(end),
    ...[OP.block, VOID_BLOCK, ...get(first), ...get(end), OP.i32GeU, OP.brIf, 0],
    ...[OP.loop, VOID_BLOCK],
    ...body,
    ...advance,
    ...[...get(first), ...get(end), OP.i32LtU, OP.brIf, 0],
    ...[OP.end, OP.end],
  ];
}

/**
 * adam(p, g, m, v, bytes, b1, b2, keep1, keep2, lrDecay, stepSize, inv2, eps), per element:
 *   m' = b1·m + keep1·g;  v' = b2·v + (keep2·g)·g;  p' = (p − lrDecay·p) − (stepSize·m') / (sqrt(v'·inv2) + eps)
 * exactly as AdamOptimizer's JavaScript loop writes it.
 */
function adamBody(): number[] {
  const [p, g, m, v, bytes] = [0, 1, 2, 3, 4];
  const scalars = [5, 6, 7, 8, 9, 10, 11, 12];
  const end = 13;
  const [B1, B2, K1, K2, LD, SS, I2, EPS] = [14, 15, 16, 17, 18, 19, 20, 21];
  const [gv, mi, vi, pv] = [22, 23, 24, 25];
  const vectors = [B1, B2, K1, K2, LD, SS, I2, EPS];
  const body = [
    ...loadPair(g),
    ...set(gv),
    ...binary(SIMD.add, binary(SIMD.mul, get(B1), loadPair(m)), binary(SIMD.mul, get(K1), get(gv))),
    ...set(mi),
    ...binary(
      SIMD.add,
      binary(SIMD.mul, get(B2), loadPair(v)),
      binary(SIMD.mul, binary(SIMD.mul, get(K2), get(gv)), get(gv)),
    ),
    ...set(vi),
    ...storePair(m, get(mi)),
    ...storePair(v, get(vi)),
    ...loadPair(p),
    ...set(pv),
    ...storePair(
      p,
      binary(
        SIMD.sub,
        binary(SIMD.sub, get(pv), binary(SIMD.mul, get(LD), get(pv))),
        binary(
          SIMD.div,
          binary(SIMD.mul, get(SS), get(mi)),
          binary(SIMD.add, [...binary(SIMD.mul, get(vi), get(I2)), ...simd(SIMD.sqrt)], get(EPS)),
        ),
      ),
    ),
  ];
  return [
    ...scalars.flatMap((s, i) => splatInto(s, vectors[i] as number)),
    ...pairLoop([p, g, m, v], bytes, end, body),
  ];
}

/**
 * momentum(p, g, velocity, bytes, lr, wd, mu, nesterov), per element, as SgdOptimizer's loop:
 *   g' = g + wd·p;  v' = mu·v + g';  p' = p − lr·(nesterov ? g' + mu·v' : v')
 * `nesterov` (0 or 1) picks one of two loops per call, each with exactly the JavaScript's
 * operations (blending both updates by a 0/1 factor would add operations, and so rounding).
 */
function momentumBody(): number[] {
  const [p, g, vel, bytes] = [0, 1, 2, 3];
  const [lr, wd, mu, nesterov] = [4, 5, 6, 7];
  const end = 8;
  const [LR, WD, MU] = [9, 10, 11];
  const [pv, gv, vv] = [12, 13, 14];
  const common = [
    ...loadPair(p),
    ...set(pv),
    ...binary(SIMD.add, loadPair(g), binary(SIMD.mul, get(WD), get(pv))),
    ...set(gv),
    ...binary(SIMD.add, binary(SIMD.mul, get(MU), loadPair(vel)), get(gv)),
    ...set(vv),
    ...storePair(vel, get(vv)),
  ];
  const heavyBall = storePair(p, binary(SIMD.sub, get(pv), binary(SIMD.mul, get(LR), get(vv))));
  const lookahead = storePair(
    p,
    binary(SIMD.sub, get(pv), binary(SIMD.mul, get(LR), binary(SIMD.add, get(gv), binary(SIMD.mul, get(MU), get(vv))))),
  );
  const ifElse = (condition: number, then: readonly number[], otherwise: readonly number[]): number[] => [
    ...get(condition),
    0x04, // if
    VOID_BLOCK,
    ...then,
    0x05, // else
    ...otherwise,
    OP.end,
  ];
  const loop = (update: readonly number[]): number[] => pairLoop([p, g, vel], bytes, end, [...common, ...update]);
  return [
    ...splatInto(lr, LR),
    ...splatInto(wd, WD),
    ...splatInto(mu, MU),
    ...ifElse(nesterov, loop(lookahead), loop(heavyBall)),
  ];
}

function moduleBytes(): Uint8Array {
  const header = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  const adamType = [0x60, 0x0d, ...Array<number>(5).fill(TYPE.i32), ...Array<number>(8).fill(TYPE.f64), 0x00];
  const momentumType = [
    0x60,
    0x08,
    ...Array<number>(4).fill(TYPE.i32),
    ...Array<number>(3).fill(TYPE.f64),
    TYPE.i32,
    0x00,
  ];
  const types = [0x02, ...adamType, ...momentumType];
  const imports = [0x01, ...name('env'), ...name('memory'), 0x02, 0x00, 0x00]; // memory, min 0 pages
  const functions = [0x02, 0x00, 0x01];
  const exports = [0x02, ...name('adam'), 0x00, 0x00, ...name('momentum'), 0x00, 0x01];
  const adam = functionBody(
    [
      [1, TYPE.i32],
      [12, TYPE.v128],
    ],
    adamBody(),
  );
  const momentum = functionBody(
    [
      [1, TYPE.i32],
      [6, TYPE.v128],
    ],
    momentumBody(),
  );
  const code = [0x02, ...adam, ...momentum];
  return new Uint8Array([
    ...header,
    ...section(1, types),
    ...section(2, imports),
    ...section(3, functions),
    ...section(7, exports),
    ...section(10, code),
  ]);
}

/** The byte offsets of `views` in `arena`, or undefined unless there is one and it holds them all. */
export function offsetsIn(arena: OptimizerArena | undefined, views: readonly Float32Array[]): number[] | undefined {
  if (arena === undefined) return undefined;
  const offsets = views.map((view) => arena.offsetOf(view));
  return offsets.every((offset) => offset >= 0) ? offsets : undefined;
}
