// What a person watching the run sees on stdout: one line per epoch and the final figures.
// Machine-readable records go to metrics.jsonl and summary.json instead.
import type { SplitMetrics } from '../loop/evaluator.js';
import type { StepOutcome } from '../loop/step-driver.js';

export interface EpochLine {
  epoch: number;
  epochs: number;
  trainLoss: number;
  validation: SplitMetrics | undefined;
  samplesPerSecond: number;
}

export class ProgressReporter {
  constructor(
    private readonly write: (line: string) => void = (line) => process.stdout.write(`${line}\n`),
    /** Print a line every K steps (0 = never). */
    private readonly everySteps = 0,
  ) {}

  note(text: string): void {
    this.write(text);
  }

  step(outcome: StepOutcome): void {
    if (this.everySteps > 0 && (outcome.step + 1) % this.everySteps === 0) {
      this.write(
        `  step ${outcome.step + 1}  loss ${outcome.loss.toFixed(4)}${outcome.skipped ? '  (skipped: non-finite gradient)' : ''}`,
      );
    }
  }

  epochEnd(line: EpochLine): void {
    const validation = Object.entries(line.validation ?? {})
      .map(([name, value]) => `validation ${name} ${value.toFixed(4)}`)
      .join('  ');
    this.write(
      `epoch ${line.epoch + 1}/${line.epochs}  train loss ${line.trainLoss.toFixed(4)}  ${validation}  ${Math.round(line.samplesPerSecond)} samples/s`.replace(
        / {3,}/g,
        '  ',
      ),
    );
  }

  final(split: string, metrics: SplitMetrics | undefined): void {
    if (metrics === undefined) return;
    const parts = Object.entries(metrics).map(([name, value]) => `${split} ${name} ${value.toFixed(4)}`);
    // Accuracy first: it is the figure people look for.
    parts.sort((a, b) => Number(b.includes('accuracy')) - Number(a.includes('accuracy')));
    this.write(parts.join('  '));
  }
}
