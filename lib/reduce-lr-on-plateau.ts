// Keras's ReduceLROnPlateau over train()'s callback API: at each epoch end (where a validation
// has just run), lower the learning rate by `factor` when `monitor` has not improved for
// `patience` epochs. Its state lives in this object, so a resumed run starts it afresh (the
// learning rates it set before the checkpoint are part of the run and are kept).
import type { TrainingCallbacks, TrainingEvent } from '../coordinator/training-callbacks.js';

export interface ReduceLROnPlateauOptions {
  /** The metric to watch. @default 'validation.loss' */
  monitor?: string;
  /** Whether lower or higher is better. @default 'max' for accuracy metrics, else 'min' */
  mode?: 'min' | 'max';
  /** New rate = old rate × factor. @default 0.1 */
  factor?: number;
  /** Epochs without improvement before the rate is lowered. @default 10 */
  patience?: number;
  /** The smallest change that counts as an improvement. @default 1e-4 */
  minDelta?: number;
  /** Epochs to wait after a reduction before counting again. @default 0 */
  cooldown?: number;
  /** The rate is never lowered below this. @default 0 */
  minLr?: number;
}

export class ReduceLROnPlateau implements TrainingCallbacks {
  private readonly monitor: string;
  private readonly better: (current: number, best: number) => boolean;
  private readonly options: Required<Omit<ReduceLROnPlateauOptions, 'monitor' | 'mode'>>;
  private best = Number.NaN;
  private wait = 0;
  private cooldownLeft = 0;

  constructor(options: ReduceLROnPlateauOptions = {}) {
    const {
      monitor = 'validation.loss',
      factor = 0.1,
      patience = 10,
      minDelta = 1e-4,
      cooldown = 0,
      minLr = 0,
    } = options;
    if (!(factor > 0 && factor < 1)) throw new RangeError(`ReduceLROnPlateau: factor must be in (0, 1), got ${factor}`);
    this.monitor = monitor;
    this.options = { factor, patience, minDelta: Math.abs(minDelta), cooldown, minLr };
    const max = (options.mode ?? (/acc/i.test(monitor) ? 'max' : 'min')) === 'max';
    this.better = max ? (c, b) => c > b + this.options.minDelta : (c, b) => c < b - this.options.minDelta;
  }

  onEpochEnd = (event: TrainingEvent): void => {
    const current = event.metrics[this.monitor];
    if (current === undefined)
      throw new Error(
        `ReduceLROnPlateau: no metric "${this.monitor}" (have: ${Object.keys(event.metrics).join(', ')})`,
      );
    if (this.cooldownLeft > 0) {
      this.cooldownLeft -= 1;
      this.wait = 0;
    }
    if (Number.isNaN(this.best) || this.better(current, this.best)) {
      this.best = current;
      this.wait = 0;
    } else if (this.cooldownLeft === 0 && ++this.wait >= this.options.patience) {
      // As Keras: at the floor already, the wait goes on counting.
      if (event.learningRate > this.options.minLr) {
        event.setLearningRate(Math.max(event.learningRate * this.options.factor, this.options.minLr));
        this.cooldownLeft = this.options.cooldown;
        this.wait = 0;
      }
    }
  };
}
