// Helpers for the small WebAssembly modules ringtrain assembles from bytes at load time (no
// toolchain): the all-reduce's SIMD add (collectives/simd-add.ts) and the optimizer kernels
// (replica/optimizers/optimizer-kernels.ts). Binary format: https://webassembly.github.io/spec/core/binary/

/** Value types in the binary format. */
export const TYPE = { i32: 0x7f, f64: 0x7c, v128: 0x7b } as const;

/** Core opcodes used by the modules. */
export const OP = {
  block: 0x02,
  loop: 0x03,
  end: 0x0b,
  brIf: 0x0d,
  localGet: 0x20,
  localSet: 0x21,
  localTee: 0x22,
  i32Const: 0x41,
  i32LtU: 0x49,
  i32GeU: 0x4f,
  i32Add: 0x6a,
  simdPrefix: 0xfd,
} as const;

export const VOID_BLOCK = 0x40;

/** The part of the WebAssembly global used here (this project's lib settings do not declare it). */
export interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
  Memory: new (descriptor: { initial: number; maximum?: number }) => { buffer: ArrayBuffer };
}

/** This runtime's WebAssembly, or undefined where there is none. */
export function wasmApi(): WasmApi | undefined {
  return (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
}

export function section(id: number, content: readonly number[]): number[] {
  return [id, ...unsignedLeb(content.length), ...content];
}

export function name(text: string): number[] {
  return [...unsignedLeb(text.length), ...Array.from(text, (char) => char.charCodeAt(0))];
}

export function unsignedLeb(value: number): number[] {
  const out: number[] = [];
  let rest = value;
  for (let i = 0; i < 5; i++) {
    const low = rest & 0x7f;
    rest >>>= 7;
    out.push(rest === 0 ? low : low | 0x80);
    if (rest === 0) break;
  }
  return out;
}

/** The code section entry of one function: its local declarations (count, type) and body. */
export function functionBody(
  locals: ReadonlyArray<readonly [number, number]>,
  instructions: readonly number[],
): number[] {
  const declarations = [
    ...unsignedLeb(locals.length),
    ...locals.flatMap(([count, type]) => [...unsignedLeb(count), type]),
  ];
  const body = [...declarations, ...instructions, OP.end];
  return [...unsignedLeb(body.length), ...body];
}
