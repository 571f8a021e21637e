// What a person (or a script) watching the run sees on stdout: the ProgressReporter turns the
// loop's steps, epoch ends and final figures into ProgressEvents, with rates over windows (the
// recent steps, the epoch) from a ThroughputMeter, and hands them to one view:
//   plain  one line per epoch, and a step line every intervalMs within a long epoch (not a TTY);
//   live   a progress bar on a TTY (live-progress-view.ts);
//   quiet  the final line only (errors go to stderr as always);
//   json   every event as one JSON object per line.
// Machine-readable records of every step go to metrics.jsonl and summary.json instead.
import type { SplitMetrics } from '../loop/evaluator.js';
import type { StepOutcome } from '../loop/step-driver.js';
import { epochLine, stepLine, textOf, type ProgressEvent } from './progress-events.js';
import { ThroughputMeter, type ThroughputFigures } from './throughput-meter.js';

export interface ProgressView {
  show(event: ProgressEvent): void;
  /** Ends any live output (a bar on a TTY). Idempotent. */
  close(): void;
}

export interface EpochLine {
  /** The epoch that ended, from 0 (as metrics.jsonl counts). */
  epoch: number;
  epochs: number;
  /** Steps done. */
  step: number;
  trainLoss: number;
  validation: SplitMetrics | undefined;
}

/** The steps this run will take, for the ETA and the position within an epoch. */
export interface ProgressPlan {
  lastStep: number;
  stepsPerEpoch: number;
  epochs: number;
}

/** One line to stdout. */
export function stdoutLine(line: string): void {
  process.stdout.write(`${line}\n`);
}

export class ProgressReporter {
  private readonly meter = new ThroughputMeter();
  private plan: ProgressPlan = { lastStep: 0, stepsPerEpoch: 1, epochs: 1 };

  constructor(private readonly view: ProgressView = new PlainProgressView(stdoutLine)) {}

  /** Called when the loop (re)starts; the meter carries on across regroups. */
  planRun(plan: ProgressPlan): void {
    this.plan = plan;
  }

  note(text: string): void {
    this.view.show({ event: 'note', text });
  }

  step(outcome: StepOutcome): void {
    const { lastStep, stepsPerEpoch, epochs } = this.plan;
    const epoch = Math.floor(outcome.step / stepsPerEpoch);
    this.meter.add(epoch, outcome.globalCount, outcome.wallMs / 1000);
    this.view.show({
      event: 'step',
      epoch: epoch + 1,
      epochs,
      step: outcome.step + 1,
      lastStep,
      stepInEpoch: (outcome.step % stepsPerEpoch) + 1,
      stepsPerEpoch,
      loss: outcome.loss,
      skipped: outcome.skipped,
      samplesPerSecond: this.meter.recentRate(),
      etaSeconds: Math.max(0, lastStep - outcome.step - 1) * this.meter.recentSecondsPerStep(),
    });
  }

  epochEnd(line: EpochLine): void {
    this.view.show({
      event: 'epoch',
      epoch: line.epoch + 1,
      epochs: line.epochs,
      step: line.step,
      trainLoss: line.trainLoss,
      validation: line.validation ?? {},
      samplesPerSecond: this.meter.epochRate(line.epoch),
      seconds: this.meter.epochSeconds(line.epoch),
    });
  }

  final(split: string, metrics: SplitMetrics | undefined): void {
    if (metrics !== undefined) this.view.show({ event: 'metrics', split, metrics });
  }

  /** Overall and steady-state samples/s of the steps this process ran. */
  throughput(): ThroughputFigures {
    return this.meter.figures();
  }

  /** The run's throughput (when this process ran steps), then its last line. */
  end(end: Omit<Extract<ProgressEvent, { event: 'end' }>, 'event'>): void {
    const { samplesPerSecond, steadySamplesPerSecond } = this.meter.figures();
    if (samplesPerSecond > 0)
      this.view.show({
        event: 'throughput',
        samplesPerSecond,
        ...(steadySamplesPerSecond !== undefined ? { steadySamplesPerSecond } : {}),
      });
    this.view.show({ event: 'end', ...end });
  }

  close(): void {
    this.view.close();
  }
}

export interface PlainViewOptions {
  /** Within an epoch, a step line when this long has passed since the last line. @default 30000 */
  intervalMs?: number;
  /** Milliseconds clock. @default performance.now */
  now?: () => number;
}

/** For logs (CI, Kubernetes): one line per epoch, and a step line every intervalMs of a long epoch. */
export class PlainProgressView implements ProgressView {
  private readonly intervalMs: number;
  private readonly now: () => number;
  private lastLineMs: number | undefined;

  constructor(
    private readonly write: (line: string) => void,
    options: PlainViewOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? 30_000;
    this.now = options.now ?? (() => performance.now());
  }

  show(e: ProgressEvent): void {
    switch (e.event) {
      case 'step': {
        const now = this.now();
        this.lastLineMs ??= now;
        if (now - this.lastLineMs >= this.intervalMs && e.step < e.lastStep && e.stepInEpoch < e.stepsPerEpoch) {
          this.write(stepLine(e));
          this.lastLineMs = now;
        }
        return;
      }
      case 'epoch':
        this.write(epochLine(e));
        this.lastLineMs = this.now();
        return;
      default:
        this.write(textOf(e));
    }
  }

  close(): void {}
}

/** `--quiet`: the run's last line only. */
export class QuietProgressView implements ProgressView {
  constructor(private readonly write: (line: string) => void) {}

  show(e: ProgressEvent): void {
    if (e.event === 'end') this.write(e.text);
  }

  close(): void {}
}

/** `--json`: every event as one JSON object per line. */
export class JsonProgressView implements ProgressView {
  constructor(private readonly write: (line: string) => void) {}

  show(e: ProgressEvent): void {
    this.write(JSON.stringify(e));
  }

  close(): void {}
}
