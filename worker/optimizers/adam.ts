// Adam / AdamW on flat buffers, TensorFlow.js and PyTorch conventions (ε added outside the sqrt):
//   p -= lr·wd·p                                   (decoupled decay, AdamW; before the update)
//   t += 1
//   m = β1·m + (1−β1)·g;   v = β2·v + (1−β2)·g²
//   m̂ = m / (1−β1^t);      v̂ = v / (1−β2^t)        (bias correction, Math.pow in float64)
//   p -= lr·m̂ / (sqrt(v̂) + ε)
// Arithmetic runs in float64 locals; only m, v and p are rounded to float32 when stored.
import { checkApplyArgs, copySlots, importSlots, type FlatOptimizer, type OptimizerState } from './flat-optimizer.js';

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
  ) {
    this.m = new Float32Array(paramCount);
    this.v = new Float32Array(paramCount);
  }

  get step(): number {
    return this.t;
  }

  apply(params: Float32Array, grad: Float32Array, learningRate: number): void {
    checkApplyArgs(this.paramCount, params, grad, learningRate);
    const { beta1: b1, beta2: b2, epsilon: eps } = this.options;
    const lr = learningRate;
    const lrDecay = learningRate * this.options.weightDecay;
    const { m, v } = this;
    this.t += 1;
    const correction1 = 1 - Math.pow(b1, this.t);
    const correction2 = 1 - Math.pow(b2, this.t);
    for (let i = 0; i < params.length; i++) {
      const g = grad[i] as number;
      const mi = b1 * (m[i] as number) + (1 - b1) * g;
      const vi = b2 * (v[i] as number) + (1 - b2) * g * g;
      m[i] = mi;
      v[i] = vi;
      const p = params[i] as number;
      const decayed = p - lrDecay * p;
      params[i] = decayed - (lr * (mi / correction1)) / (Math.sqrt(vi / correction2) + eps);
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
