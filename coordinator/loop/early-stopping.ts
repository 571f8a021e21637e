// Early stopping on one monitored metric: stop after `patience` validations in a row without an
// improvement of more than `minDelta`. Pure state machine; the coordinator feeds it validation
// results and stores exportState() in checkpoints so a resumed run keeps counting.
import { JobConfigError } from '../../shared/errors.js';

export type EarlyStoppingMode = 'auto' | 'min' | 'max';

export interface EarlyStoppingOptions {
  /** Metric key as reported, e.g. 'validation.loss' or 'validation.accuracy'. */
  monitor: string;
  /** Validations without improvement before stopping (>= 1). */
  patience: number;
  /** An improvement must beat the best by more than this (>= 0). */
  minDelta: number;
  /** 'auto': 'max' for accuracy-like metrics (accuracy, binaryAccuracy), else 'min'. */
  mode: EarlyStoppingMode;
}

export interface EarlyStoppingVerdict {
  improved: boolean;
  shouldStop: boolean;
  /** Best value seen so far (±Infinity before the first finite value). */
  best: number;
  /** Validations since the last improvement. */
  wait: number;
}

export class EarlyStopping {
  readonly monitor: string;
  readonly direction: 'min' | 'max';
  private readonly patience: number;
  private readonly minDelta: number;
  private best: number;
  private wait = 0;

  constructor(options: EarlyStoppingOptions) {
    if (!Number.isInteger(options.patience) || options.patience < 1)
      throw new RangeError(`patience must be a positive integer, got ${options.patience}`);
    if (!(options.minDelta >= 0)) throw new RangeError(`minDelta must be >= 0, got ${options.minDelta}`);
    this.monitor = options.monitor;
    this.patience = options.patience;
    this.minDelta = options.minDelta;
    this.direction = options.mode === 'auto' ? autoDirection(options.monitor) : options.mode;
    this.best = this.direction === 'min' ? Infinity : -Infinity;
  }

  /** Feeds one validation result; a NaN or infinite value never counts as an improvement. */
  update(metrics: Record<string, number>): EarlyStoppingVerdict {
    const value = metrics[this.monitor];
    if (value === undefined) {
      const known = Object.keys(metrics).sort().join(', ') || 'none';
      throw new JobConfigError('validation.earlyStopping.monitor', [
        `"${this.monitor}" is not among the reported metrics (${known}); monitor one of them or add the metric to "metrics"`,
      ]);
    }
    const improved = Number.isFinite(value) && this.beats(value);
    if (improved) {
      this.best = value;
      this.wait = 0;
    } else {
      this.wait += 1;
    }
    return { improved, shouldStop: this.wait >= this.patience, best: this.best, wait: this.wait };
  }

  /** JSON-safe state (no Infinity): `hasBest` 0/1 says whether `best` means anything. */
  exportState(): Record<string, number> {
    const hasBest = Number.isFinite(this.best);
    return { best: hasBest ? this.best : 0, hasBest: hasBest ? 1 : 0, wait: this.wait };
  }

  importState(state: Record<string, number>): void {
    const { best, hasBest, wait } = state;
    if (
      best === undefined ||
      !Number.isFinite(best) ||
      (hasBest !== 0 && hasBest !== 1) ||
      wait === undefined ||
      !Number.isInteger(wait) ||
      wait < 0
    ) {
      throw new RangeError(`not an early-stopping state: ${JSON.stringify(state)}`);
    }
    this.best = hasBest === 1 ? best : this.direction === 'min' ? Infinity : -Infinity;
    this.wait = wait;
  }

  private beats(value: number): boolean {
    return this.direction === 'min' ? value < this.best - this.minDelta : value > this.best + this.minDelta;
  }
}

/** Accuracy-like metrics grow as the model improves; losses and errors (mae, mse) shrink. */
export function autoDirection(monitor: string): 'min' | 'max' {
  const metric = monitor.slice(monitor.lastIndexOf('.') + 1);
  return /accuracy$/i.test(metric) ? 'max' : 'min';
}
