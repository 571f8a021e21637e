// The WebAssembly SIMD optimizer updates (optimizer-kernels.ts) against the JavaScript loops they
// replace: bit-identical parameters and slots after several steps, for every optimizer with a
// kernel, even and odd lengths, and values from tiny to large (a rounding or operation-order slip
// shows in the last bits).
import { describe, expect, it } from 'vitest';
import { optimizerSchema } from '../../shared/job-schema.js';
import { createOptimizer, slotBuffers } from '../../worker/replica/optimizers/optimizer.js';
import { OptimizerArena } from '../../worker/replica/optimizers/optimizer-kernels.js';

/** Deterministic values spread over many magnitudes and both signs. */
function values(count: number, seed: number): Float32Array {
  const out = new Float32Array(count);
  let state = seed >>> 0;
  for (let i = 0; i < count; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    const unit = state / 2 ** 32;
    out[i] = (unit - 0.5) * 10 ** Math.floor(unit * 12 - 8);
  }
  return out;
}

const SPECS = [
  { type: 'adam' },
  { type: 'adam', weightDecay: 0.01, beta1: 0.8, beta2: 0.95, epsilon: 1e-6 },
  { type: 'momentum', momentum: 0.9 },
  { type: 'nesterov', momentum: 0.9, weightDecay: 0.001 },
  { type: 'sgd', momentum: 0.5 },
] as const;

describe('optimizer kernels', () => {
  it('the runtime builds them (Node 20 has WebAssembly SIMD)', () => {
    expect(OptimizerArena.create([8, 8])).toBeDefined();
  });

  for (const input of SPECS) {
    for (const count of [1, 2, 7, 1000, 4099]) {
      it(`${JSON.stringify(input)}, ${count} parameters: SIMD = JavaScript, bit for bit`, () => {
        const spec = optimizerSchema.parse({ learningRate: 0.01, ...input });
        const arena = OptimizerArena.create([count, count, ...Array<number>(slotBuffers(spec)).fill(count)]);
        if (arena === undefined) throw new Error('no WebAssembly SIMD in this runtime');
        const simd = createOptimizer(spec, count, arena);
        const plain = createOptimizer(spec, count);
        const simdParams = arena.allocate(count);
        const simdGrad = arena.allocate(count);
        simdParams.set(values(count, 1));
        const plainParams = values(count, 1);
        for (let step = 0; step < 4; step++) {
          const grad = values(count, 100 + step);
          simdGrad.set(grad);
          simd.apply(simdParams, simdGrad, 0.01 * (step + 1));
          plain.apply(plainParams, grad, 0.01 * (step + 1));
        }
        expect(
          Buffer.from(simdParams.buffer, simdParams.byteOffset, count * 4).equals(Buffer.from(plainParams.buffer)),
        ).toBe(true);
        const [a, b] = [simd.exportState(), plain.exportState()];
        for (const [slot, data] of Object.entries(b.slots))
          expect(Buffer.from((a.slots[slot] as Float32Array).buffer).equals(Buffer.from(data.buffer)), slot).toBe(true);
      });
    }
  }

  it('buffers outside the arena take the JavaScript loop with the same result', () => {
    const spec = optimizerSchema.parse({ type: 'adam', learningRate: 0.01 });
    const arena = OptimizerArena.create([16, 16, 16, 16]);
    const mixed = createOptimizer(spec, 16, arena);
    const plain = createOptimizer(spec, 16);
    const [p1, p2] = [values(16, 3), values(16, 3)];
    mixed.apply(p1, values(16, 4), 0.01);
    plain.apply(p2, values(16, 4), 0.01);
    expect([...p1]).toEqual([...p2]);
  });

  it('refuses an allocation past its capacity', () => {
    const arena = OptimizerArena.create([4]);
    expect(() => arena?.allocate(1_000_000)).toThrow(/do not fit/);
  });
});
