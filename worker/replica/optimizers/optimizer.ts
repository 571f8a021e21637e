// Entry point for optimizers on flat buffers: the FlatOptimizer contract and the factory that
// turns a job's optimizer spec into one. Semantics of each optimizer are in sgd.ts and adam.ts.
// Clipping and averaging happen before apply (worker/gradient-ops.ts); the learning rate comes
// from shared/lr-schedule.ts. Nothing here depends on rank or world size.
import type { OptimizerSpec } from '../../../shared/job-schema.js';
import { AdamOptimizer } from './adam.js';
import type { FlatOptimizer } from './flat-optimizer.js';
import type { OptimizerArena } from './optimizer-kernels.js';
import { SgdOptimizer } from './sgd.js';

export type { FlatOptimizer, OptimizerState, OptimizerType } from './flat-optimizer.js';

/**
 * Builds the optimizer for `paramCount` flat parameters; slots are allocated here, once, inside
 * `arena` when given (then updates of params and grad from the same arena run as SIMD).
 */
export function createOptimizer(spec: OptimizerSpec, paramCount: number, arena?: OptimizerArena): FlatOptimizer {
  if (!Number.isInteger(paramCount) || paramCount < 0)
    throw new RangeError(`createOptimizer: paramCount must be a non-negative integer, got ${paramCount}`);
  switch (spec.type) {
    case 'sgd':
    case 'momentum':
      return new SgdOptimizer(
        { type: spec.type, momentum: spec.momentum, nesterov: spec.nesterov, weightDecay: spec.weightDecay },
        paramCount,
        arena,
      );
    case 'nesterov':
      return new SgdOptimizer(
        { type: spec.type, momentum: spec.momentum, nesterov: true, weightDecay: spec.weightDecay },
        paramCount,
        arena,
      );
    case 'adam':
      return new AdamOptimizer(
        { beta1: spec.beta1, beta2: spec.beta2, epsilon: spec.epsilon, weightDecay: spec.weightDecay },
        paramCount,
        arena,
      );
  }
}

/** Float buffers of `paramCount` floats the optimizer keeps as slots (Adam's m and v, a velocity). */
export function slotBuffers(spec: OptimizerSpec): number {
  if (spec.type === 'adam') return 2;
  return spec.momentum > 0 ? 1 : 0;
}
