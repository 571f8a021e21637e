// The contract every optimizer on flat Float32Array buffers meets, plus the checks they share.
// Invariant: an optimizer's result depends only on (its state, params, grad, learningRate) and
// is computed by a fixed-order loop, so every rank stays bit-identical to every other.
import { OptimizerStateError } from '../../../shared/errors.js';
import type { OptimizerState } from '../../../shared/train-state.js';

export type { OptimizerState } from '../../../shared/train-state.js';

export type OptimizerType = 'sgd' | 'momentum' | 'nesterov' | 'adam';

export interface FlatOptimizer {
  readonly type: OptimizerType;
  /**
   * In place: params -= update(grad). `grad` is the averaged gradient (already divided by the
   * global count, already clipped). `learningRate` comes from the schedule for this step.
   */
  apply(params: Float32Array, grad: Float32Array, learningRate: number): void;
  /** Number of updates applied so far (Adam's t). */
  readonly step: number;
  /** A deep copy: later updates do not change the returned slots. */
  exportState(): OptimizerState;
  /** Copies `state` in; validates type, slot names and slot lengths and throws an Error naming the mismatch. */
  importState(state: OptimizerState): void;
}

/** Throws unless params and grad both hold exactly `paramCount` values and lr is usable. */
export function checkApplyArgs(
  paramCount: number,
  params: Float32Array,
  grad: Float32Array,
  learningRate: number,
): void {
  if (params.length !== paramCount || grad.length !== paramCount) {
    throw new RangeError(
      `optimizer built for ${paramCount} parameters got params of length ${params.length} and grad of length ${grad.length}`,
    );
  }
  if (!Number.isFinite(learningRate) || learningRate < 0)
    throw new RangeError(`optimizer: learningRate must be finite and >= 0, got ${learningRate}`);
}

/** Validates an imported state against what this optimizer holds, then copies the slots in. */
export function importSlots(type: OptimizerType, slots: Record<string, Float32Array>, state: OptimizerState): void {
  if (state.type !== type) throw new OptimizerStateError(type, `the state is for "${state.type}"`);
  if (!Number.isInteger(state.step) || state.step < 0)
    throw new OptimizerStateError(type, `its step must be a non-negative integer, got ${state.step}`);
  const expected = Object.keys(slots).sort();
  const got = Object.keys(state.slots).sort();
  if (expected.join(',') !== got.join(',')) {
    throw new OptimizerStateError(type, `the state has slots [${got.join(', ')}], expected [${expected.join(', ')}]`);
  }
  for (const [name, own] of Object.entries(slots)) {
    const incoming = state.slots[name];
    if (incoming === undefined || incoming.length !== own.length) {
      throw new OptimizerStateError(type, `slot "${name}" has length ${incoming?.length ?? 0}, expected ${own.length}`);
    }
  }
  for (const [name, own] of Object.entries(slots)) own.set(state.slots[name] as Float32Array);
}

/** Deep copy of the slots for exportState. */
export function copySlots(slots: Record<string, Float32Array>): Record<string, Float32Array> {
  return Object.fromEntries(Object.entries(slots).map(([name, slot]) => [name, slot.slice()]));
}
