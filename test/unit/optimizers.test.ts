// Optimizer steps against hand-computed values, state export/import, and input validation.
import { describe, expect, it } from 'vitest';
import { OptimizerStateError } from '../../shared/errors.js';
import { optimizerSchema, type OptimizerSpec } from '../../shared/job-schema.js';
import { createOptimizer, type FlatOptimizer } from '../../worker/replica/optimizers/optimizer.js';

const LR = 0.1;
/** Gradients fed at steps 1, 2, 3 to a two-parameter model starting at p = [1, -2]. */
const GRADS = [
  [0.5, 0.25],
  [-1, 2],
  [0, 0],
] as const;

function spec(input: Record<string, unknown>): OptimizerSpec {
  return optimizerSchema.parse({ learningRate: LR, ...input });
}

/** Runs the optimizer over GRADS and returns params after each step. */
function trajectory(optimizer: FlatOptimizer, steps: number): number[][] {
  const params = new Float32Array([1, -2]);
  const out: number[][] = [];
  for (const g of GRADS.slice(0, steps)) {
    optimizer.apply(params, new Float32Array(g), LR);
    out.push([...params]);
  }
  return out;
}

function expectTrajectory(actual: number[][], expected: number[][]): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((row, step) =>
    row.forEach((x, i) => expect(x, `step ${step + 1}, param ${i}`).toBeCloseTo(expected[step]?.[i] ?? NaN, 6)),
  );
}

describe('sgd', () => {
  it('p -= lr·g', () => {
    // [1 - 0.05, -2 - 0.025], then [0.95 + 0.1, -2.025 - 0.2]
    expectTrajectory(trajectory(createOptimizer(spec({ type: 'sgd' }), 2), 2), [
      [0.95, -2.025],
      [1.05, -2.225],
    ]);
  });

  it('adds weightDecay·p to the gradient', () => {
    // step 1: g' = [0.5 + 0.1, 0.25 - 0.2] = [0.6, 0.05] -> p = [0.94, -2.005]
    // step 2: g' = [-1 + 0.094, 2 - 0.2005] = [-0.906, 1.7995] -> p = [1.0306, -2.18495]
    expectTrajectory(trajectory(createOptimizer(spec({ type: 'sgd', weightDecay: 0.1 }), 2), 2), [
      [0.94, -2.005],
      [1.0306, -2.18495],
    ]);
  });

  it('counts steps', () => {
    const optimizer = createOptimizer(spec({ type: 'sgd' }), 2);
    trajectory(optimizer, 3);
    expect(optimizer.step).toBe(3);
    expect(optimizer.exportState()).toEqual({ type: 'sgd', step: 3, slots: {} });
  });
});

describe('momentum', () => {
  // v1 = [0.5, 0.25]; v2 = 0.9·v1 + g2 = [-0.55, 2.225]; v3 = 0.9·v2 = [-0.495, 2.0025]
  const expected = [
    [0.95, -2.025],
    [1.005, -2.2475],
    [1.0545, -2.44775],
  ];

  it('v = μ·v + g; p -= lr·v (type momentum)', () => {
    expectTrajectory(trajectory(createOptimizer(spec({ type: 'momentum', momentum: 0.9 }), 2), 3), expected);
  });

  it('is the same for type sgd with momentum > 0', () => {
    const optimizer = createOptimizer(spec({ type: 'sgd', momentum: 0.9 }), 2);
    expectTrajectory(trajectory(optimizer, 3), expected);
    expect(optimizer.type).toBe('sgd');
    expect(optimizer.exportState().slots['velocity']?.[1]).toBeCloseTo(2.0025, 6);
  });
});

describe('nesterov', () => {
  // step 1: v = [0.5, 0.25], update = g + 0.9·v = [0.95, 0.475] -> p = [0.905, -2.0475]
  // step 2: v = [-0.55, 2.225], update = [-1.495, 4.0025] -> p = [1.0545, -2.44775]
  // step 3: v = [-0.495, 2.0025], update = 0.9·v = [-0.4455, 1.80225] -> p = [1.09905, -2.627975]
  const expected = [
    [0.905, -2.0475],
    [1.0545, -2.44775],
    [1.09905, -2.627975],
  ];

  it('p -= lr·(g + μ·v) with the updated v (type nesterov)', () => {
    expectTrajectory(trajectory(createOptimizer(spec({ type: 'nesterov', momentum: 0.9 }), 2), 3), expected);
  });

  it('is the same for sgd with nesterov: true', () => {
    expectTrajectory(trajectory(createOptimizer(spec({ type: 'sgd', momentum: 0.9, nesterov: true }), 2), 3), expected);
  });
});

describe('adam', () => {
  it('applies bias-corrected moments', () => {
    // step 1: m̂ = g, v̂ = g², update = g/(|g| + ε) ≈ 1 -> p = [0.900000002, -2.099999996]
    // step 2: m = [-0.055, 0.2225], v = [0.00124975, 0.0040624375], 1-β1² = 0.19, 1-β2² = 0.001999
    //   m̂ = [-0.2894737, 1.1710526], v̂ = [0.6251876, 2.0322348]
    //   update = m̂ / (sqrt(v̂) + ε) = [-0.3661035, 0.8214657]
    // step 3: m = [-0.0495, 0.20025], v = [0.00124850025, 0.0040583750625]
    const optimizer = createOptimizer(spec({ type: 'adam' }), 2);
    expectTrajectory(trajectory(optimizer, 3), [
      [0.900000002, -2.099999996],
      [0.9366103542, -2.1821465713],
      [0.9649102626, -2.2456461119],
    ]);
    const state = optimizer.exportState();
    expect(state.step).toBe(3);
    expect(state.slots['m']?.[0]).toBeCloseTo(-0.0495, 7);
    expect(state.slots['v']?.[1]).toBeCloseTo(0.0040583750625, 9);
  });

  it('decays weights decoupled (AdamW) before the update', () => {
    // step 1: p·(1 - 0.1·0.5) = [0.95, -1.9], then -= lr·[1, 1] -> [0.85, -2.0]
    // step 2: p·0.95 = [0.8075, -1.9], then -= lr·[-0.3661035, 0.8214657]
    expectTrajectory(trajectory(createOptimizer(spec({ type: 'adam', weightDecay: 0.5 }), 2), 2), [
      [0.850000002, -1.999999996],
      [0.8441103541, -1.9821465715],
    ]);
  });
});

describe('state export and import', () => {
  const specs = [
    spec({ type: 'sgd' }),
    spec({ type: 'momentum', momentum: 0.8, weightDecay: 0.01 }),
    spec({ type: 'nesterov' }),
    spec({ type: 'adam', weightDecay: 0.01 }),
  ];

  it.each(specs)('a restored $type optimizer continues bit-identically', (s) => {
    const original = createOptimizer(s, 2);
    const params = new Float32Array([1, -2]);
    for (const g of GRADS.slice(0, 2)) original.apply(params, new Float32Array(g), LR);
    const restored = createOptimizer(s, 2);
    restored.importState(original.exportState());
    expect(restored.step).toBe(2);

    const paramsRestored = params.slice();
    const grad = new Float32Array([0.3, -0.7]);
    original.apply(params, grad, LR);
    restored.apply(paramsRestored, grad, LR);
    expect(new Uint8Array(paramsRestored.buffer)).toEqual(new Uint8Array(params.buffer));
    expect(restored.exportState()).toEqual(original.exportState());
  });

  it('exports a copy that later steps do not change', () => {
    const optimizer = createOptimizer(spec({ type: 'adam' }), 2);
    const params = new Float32Array([1, -2]);
    optimizer.apply(params, new Float32Array([0.5, 0.25]), LR);
    const snapshot = optimizer.exportState();
    const m0 = snapshot.slots['m']?.[0];
    optimizer.apply(params, new Float32Array([-1, 2]), LR);
    expect(snapshot.slots['m']?.[0]).toBe(m0);
    expect(snapshot.step).toBe(1);
  });

  it('rejects a state of another type', () => {
    const adamState = createOptimizer(spec({ type: 'adam' }), 2).exportState();
    const load = (): void => createOptimizer(spec({ type: 'momentum' }), 2).importState(adamState);
    expect(load).toThrow(OptimizerStateError);
    expect(load).toThrow(/"momentum" optimizer: the state is for "adam"/);
  });

  it('rejects slots of the wrong length', () => {
    const state = createOptimizer(spec({ type: 'adam' }), 3).exportState();
    expect(() => createOptimizer(spec({ type: 'adam' }), 2).importState(state)).toThrow(
      /slot "m" has length 3, expected 2/,
    );
  });

  it('rejects missing or unexpected slots', () => {
    const adam = createOptimizer(spec({ type: 'adam' }), 2);
    expect(() => adam.importState({ type: 'adam', step: 1, slots: { m: new Float32Array(2) } })).toThrow(
      /slots \[m\], expected \[m, v\]/,
    );
    const plain = createOptimizer(spec({ type: 'sgd' }), 2);
    expect(() => plain.importState({ type: 'sgd', step: 1, slots: { velocity: new Float32Array(2) } })).toThrow(
      /slots \[velocity\], expected \[\]/,
    );
  });

  it('rejects a bad step and leaves the optimizer untouched', () => {
    const optimizer = createOptimizer(spec({ type: 'momentum' }), 2);
    const state = { type: 'momentum', step: -1, slots: { velocity: new Float32Array([9, 9]) } };
    expect(() => optimizer.importState(state)).toThrow(/step/);
    expect(optimizer.step).toBe(0);
    expect([...(optimizer.exportState().slots['velocity'] ?? [])]).toEqual([0, 0]);
  });
});

describe('apply', () => {
  it('rejects buffers of the wrong length', () => {
    const optimizer = createOptimizer(spec({ type: 'sgd' }), 2);
    expect(() => optimizer.apply(new Float32Array(2), new Float32Array(3), LR)).toThrow(
      /2 parameters.*grad of length 3/,
    );
    expect(optimizer.step).toBe(0);
  });

  it('rejects a non-finite learning rate', () => {
    const optimizer = createOptimizer(spec({ type: 'adam' }), 1);
    expect(() => optimizer.apply(new Float32Array(1), new Float32Array(1), NaN)).toThrow(/learningRate/);
  });

  it('gives bit-identical results to two replicas fed the same gradient', () => {
    const a = createOptimizer(spec({ type: 'adam' }), 64);
    const b = createOptimizer(spec({ type: 'adam' }), 64);
    const pa = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i));
    const pb = pa.slice();
    for (let step = 0; step < 5; step++) {
      const grad = Float32Array.from({ length: 64 }, (_, i) => Math.cos(i * (step + 1)));
      a.apply(pa, grad, LR);
      b.apply(pb, grad, LR);
    }
    expect(new Uint8Array(pa.buffer)).toEqual(new Uint8Array(pb.buffer));
  });
});
