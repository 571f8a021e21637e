// What the terminal shows of a run, as events (the `--json` output is exactly these, one per
// line), and the plain text of each. Epochs are numbered from 1 here, as people count them.
import type { SplitMetrics } from '../loop/evaluator.js';
import type { RunStatus } from './run-status.js';

export type ProgressEvent =
  /** A message for the person watching: where the run is, a resume, a regroup. */
  | { event: 'note'; text: string }
  /** A step finished. `step` counts steps done; rates are over the recent steps, never since the start. */
  | {
      event: 'step';
      epoch: number;
      epochs: number;
      step: number;
      lastStep: number;
      stepInEpoch: number;
      stepsPerEpoch: number;
      loss: number;
      skipped: boolean;
      samplesPerSecond: number;
      etaSeconds: number;
    }
  /** An epoch ended: its mean train loss, its validation, and its own samples/s. */
  | {
      event: 'epoch';
      epoch: number;
      epochs: number;
      step: number;
      trainLoss: number;
      validation: SplitMetrics;
      samplesPerSecond: number;
      seconds: number;
    }
  /** Final metrics on one split (train, validation, test). */
  | { event: 'metrics'; split: string; metrics: SplitMetrics }
  /** The run's throughput: overall, and without its warm-up (absent when too short to tell). */
  | { event: 'throughput'; samplesPerSecond: number; steadySamplesPerSecond?: number }
  /** The run ended (summary.json is written); `text` is its last line. */
  | { event: 'end'; status: RunStatus; step: number; plannedSteps: number; runDir: string; text: string };

/** "1h02m", "3m05s", "42s": an ETA or a duration, short. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const two = (n: number): string => String(n).padStart(2, '0');
  if (s < 3600) return `${Math.floor(s / 60)}m${two(s % 60)}s`;
  return `${Math.floor(s / 3600)}h${two(Math.floor((s % 3600) / 60))}m`;
}

/** The epoch's line: `epoch 3/10  train loss 0.1234  validation loss 0.2345  507 samples/s  12s`. */
export function epochLine(e: Extract<ProgressEvent, { event: 'epoch' }>): string {
  const validation = Object.entries(e.validation).map(([name, value]) => `validation ${name} ${value.toFixed(4)}`);
  return [
    `epoch ${e.epoch}/${e.epochs}`,
    `train loss ${e.trainLoss.toFixed(4)}`,
    ...validation,
    `${Math.round(e.samplesPerSecond)} samples/s`,
    formatDuration(e.seconds),
  ].join('  ');
}

/** A step's line, for long epochs: `epoch 3/10  step 1200/5000  loss 0.1234  507 samples/s  ETA 3m12s`. */
export function stepLine(e: Extract<ProgressEvent, { event: 'step' }>): string {
  return [
    `epoch ${e.epoch}/${e.epochs}`,
    `step ${e.step}/${e.lastStep}`,
    `loss ${e.skipped ? 'skipped' : e.loss.toFixed(4)}`,
    `${Math.round(e.samplesPerSecond)} samples/s`,
    `ETA ${formatDuration(e.etaSeconds)}`,
  ].join('  ');
}

/** Final metrics of one split, accuracy first (the figure people look for). */
export function metricsLine(split: string, metrics: SplitMetrics): string {
  const parts = Object.entries(metrics).map(([name, value]) => `${split} ${name} ${value.toFixed(4)}`);
  parts.sort((a, b) => Number(b.includes('accuracy')) - Number(a.includes('accuracy')));
  return parts.join('  ');
}

export function throughputLine(e: Extract<ProgressEvent, { event: 'throughput' }>): string {
  const steady =
    e.steadySamplesPerSecond === undefined
      ? ''
      : `, ${Math.round(e.steadySamplesPerSecond)} samples/s steady (without the warm-up)`;
  return `throughput ${Math.round(e.samplesPerSecond)} samples/s overall${steady}`;
}

/** The plain text of the events that are not steps or epochs. */
export function textOf(e: Exclude<ProgressEvent, { event: 'step' | 'epoch' }>): string {
  switch (e.event) {
    case 'note':
    case 'end':
      return e.text;
    case 'metrics':
      return metricsLine(e.split, e.metrics);
    case 'throughput':
      return throughputLine(e);
  }
}
