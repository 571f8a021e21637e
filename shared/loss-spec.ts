// The job's `loss` as written: a loss name, or `{ type, fromLogits }` for a crossentropy on raw
// scores (Keras's from_logits). Everything that needs the name or the logits flag asks here, so
// no caller compares job.loss with a string.
import type { Job, LossName } from './job-schema.js';

/** job.loss: 'categoricalCrossentropy', or { type: 'categoricalCrossentropy', fromLogits: true }. */
export type LossSpec = Job['loss'];

/** The loss function's name, whichever form the job wrote. */
export function lossName(loss: LossSpec): LossName {
  return typeof loss === 'string' ? loss : loss.type;
}

/** True when the model outputs logits and the loss applies softmax/sigmoid itself. */
export function lossFromLogits(loss: LossSpec): boolean {
  return typeof loss !== 'string' && loss.fromLogits;
}

/** "categoricalCrossentropy" or "categoricalCrossentropy (fromLogits)", for messages. */
export function describeLoss(loss: LossSpec): string {
  return lossFromLogits(loss) ? `${lossName(loss)} (fromLogits)` : lossName(loss);
}
