// Adam / AdamW on flat buffers, TensorFlow.js and PyTorch conventions (ε added outside the sqrt):
//   p -= lr·wd·p                                   (decoupled decay, AdamW; before the update)
//   t += 1
//   m = β1·m + (1−β1)·g;   v = β2·v + (1−β2)·g²
//   m̂ = m / (1−β1^t);      v̂ = v / (1−β2^t)        (bias correction, Math.pow in float64)
//   p -= lr·m̂ / (sqrt(v̂) + ε)                       (evaluated as (lr/(1−β1^t))·m / (sqrt(v·(1/(1−β2^t))) + ε))
// Arithmetic runs in float64 locals; only m, v and p are rounded to float32 when stored.
// When params, grad and the moments all live in one OptimizerArena, the same arithmetic runs as
// WebAssembly SIMD (optimizer-kernels.ts), bit-identical; this loop is the reference and the rest.
import { checkApplyArgs, copySlots, importSlots, type FlatOptimizer, type OptimizerState } from './flat-optimizer.js';
import { offsetsIn, type OptimizerArena } from './optimizer-kernels.js';

export interface AdamOptions {
  beta1: number;
  beta2: number;
  epsilon: number;
  weightDecay: number;
}

export class AdamOptimizer implements FlatOptimizer {
  readonly type = 'adam' as const;
  /** First and second moments, allocated once. */
  private readonly m: Float32Array;
  private readonly v: Float32Array;
  private t = 0;

  constructor(
    private readonly options: AdamOptions,
    private readonly paramCount: number,
    private readonly arena?: OptimizerArena,
  ) {
    this.m = arena?.allocate(paramCount) ?? new Float32Array(paramCount);
    this.v = arena?.allocate(paramCount) ?? new Float32Array(paramCount);
  }

  get step(): number {
    return this.t;
  }

  apply(params: Float32Array, grad: Float32Array, learningRate: number): void {
    checkApplyArgs(this.paramCount, params, grad, learningRate);
    const { beta1: b1, beta2: b2, epsilon: eps } = this.options;
    const lrDecay = learningRate * this.options.weightDecay;
    const { m, v } = this;
    this.t += 1;
    // Bias corrections folded into two per-step factors: lr·m/(1−β1^t) = (lr/(1−β1^t))·m and
    // v/(1−β2^t) = v·(1/(1−β2^t)). Algebraically the same update with one division per element
    // instead of three; the float64 difference is far below the float32 rounding of the store.
    const stepSize = learningRate / (1 - Math.pow(b1, this.t));
    const inverseCorrection2 = 1 / (1 - Math.pow(b2, this.t));
    const [keep1, keep2] = [1 - b1, 1 - b2];
    const length = params.length;
    let start = 0;
    const offsets = offsetsIn(this.arena, [params, grad, m, v]);
    if (this.arena !== undefined && offsets !== undefined) {
      start = length & ~1; // the kernel takes pairs; an odd last element is left to the loop below
      const [p, g, mo, vo] = offsets as [number, number, number, number];
      this.arena.kernels.adam(
        p,
        g,
        mo,
        vo,
        start * 4,
        b1,
        b2,
        keep1,
        keep2,
        lrDecay,
        stepSize,
        inverseCorrection2,
        eps,
      );
    }
    for (let i = start; i < length; i++) {
      const g = grad[i] as number;
      const mi = b1 * (m[i] as number) + keep1 * g;
      const vi = b2 * (v[i] as number) + keep2 * g * g;
      m[i] = mi;
      v[i] = vi;
      const p = params[i] as number;
      params[i] = p - lrDecay * p - (stepSize * mi) / (Math.sqrt(vi * inverseCorrection2) + eps);
    }
  }

  exportState(): OptimizerState {
    return { type: this.type, step: this.t, slots: copySlots({ m: this.m, v: this.v }) };
  }

  importState(state: OptimizerState): void {
    importSlots(this.type, { m: this.m, v: this.v }, state);
    this.t = state.step;
  }
}
