// SGD, heavy-ball momentum and Nesterov momentum on flat buffers, PyTorch conventions
// (torch.optim.SGD with dampening 0):
//   g' = g + wd·p                      (coupled L2 weight decay)
//   plain     p -= lr·g'
//   momentum  v = μ·v + g';  p -= lr·v
//   nesterov  v = μ·v + g';  p -= lr·(g' + μ·v)    (v already updated)
// v starts at zero, so the first momentum step equals a plain step, as in PyTorch.
// The velocity slot exists iff μ > 0; with μ = 0 every variant is plain SGD.
// With momentum, when params, grad and the velocity live in one OptimizerArena the update runs as
// WebAssembly SIMD (optimizer-kernels.ts), bit-identical to the loop here.
import { checkApplyArgs, copySlots, importSlots, type FlatOptimizer, type OptimizerState } from './flat-optimizer.js';
import { offsetsIn, type OptimizerArena } from './optimizer-kernels.js';

export interface SgdOptions {
  type: 'sgd' | 'momentum' | 'nesterov';
  /** μ in [0, 1). */
  momentum: number;
  nesterov: boolean;
  weightDecay: number;
}

export class SgdOptimizer implements FlatOptimizer {
  readonly type: SgdOptions['type'];
  private readonly momentum: number;
  private readonly nesterov: boolean;
  private readonly weightDecay: number;
  /** Allocated once; empty when momentum is 0. */
  private readonly slots: Record<string, Float32Array>;
  private appliedSteps = 0;

  constructor(
    options: SgdOptions,
    private readonly paramCount: number,
    private readonly arena?: OptimizerArena,
  ) {
    this.type = options.type;
    this.momentum = options.momentum;
    this.nesterov = options.nesterov;
    this.weightDecay = options.weightDecay;
    this.slots = this.momentum > 0 ? { velocity: arena?.allocate(paramCount) ?? new Float32Array(paramCount) } : {};
  }

  get step(): number {
    return this.appliedSteps;
  }

  apply(params: Float32Array, grad: Float32Array, learningRate: number): void {
    checkApplyArgs(this.paramCount, params, grad, learningRate);
    const velocity = this.slots['velocity'];
    if (velocity === undefined) this.applyPlain(params, grad, learningRate);
    else this.applyMomentum(params, grad, velocity, learningRate);
    this.appliedSteps += 1;
  }

  private applyPlain(params: Float32Array, grad: Float32Array, lr: number): void {
    const wd = this.weightDecay;
    for (let i = 0; i < params.length; i++) {
      const p = params[i] as number;
      params[i] = p - lr * ((grad[i] as number) + wd * p);
    }
  }

  private applyMomentum(params: Float32Array, grad: Float32Array, velocity: Float32Array, lr: number): void {
    const { weightDecay: wd, momentum: mu, nesterov } = this;
    let start = 0;
    const offsets = offsetsIn(this.arena, [params, grad, velocity]);
    if (this.arena !== undefined && offsets !== undefined) {
      start = params.length & ~1; // pairs in the kernel, an odd last element below
      const [p, g, v] = offsets as [number, number, number];
      this.arena.kernels.momentum(p, g, v, start * 4, lr, wd, mu, nesterov ? 1 : 0);
    }
    for (let i = start; i < params.length; i++) {
      const p = params[i] as number;
      const g = (grad[i] as number) + wd * p;
      const v = mu * (velocity[i] as number) + g;
      velocity[i] = v;
      params[i] = p - lr * (nesterov ? g + mu * v : v);
    }
  }

  exportState(): OptimizerState {
    return { type: this.type, step: this.appliedSteps, slots: copySlots(this.slots) };
  }

  importState(state: OptimizerState): void {
    importSlots(this.type, this.slots, state);
    this.appliedSteps = state.step;
  }
}
