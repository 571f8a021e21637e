// The progress of a run on a terminal: a cli-progress bar for the epoch under way (step, loss,
// samples/s of the recent steps, ETA of the run), replaced at the epoch's end by the epoch's
// summary line; any other line (a note, a final metric) is printed above a cleared bar.
//
// Invariants: at most one bar is active; close() stops it (its redraw timer with it), so no timer
// outlives the run.
import cliProgress from 'cli-progress';
import { epochLine, formatDuration, textOf, type ProgressEvent } from './progress-events.js';
import type { ProgressView } from './progress-reporter.js';

const FORMAT = 'epoch {epoch}/{epochs} {bar} {value}/{total} | loss {loss} | {rate} samples/s | ETA {etaRun}';

export class LiveProgressView implements ProgressView {
  private bar: cliProgress.SingleBar | undefined;

  /** `stream` must be a TTY (isTTY true): cli-progress draws nothing elsewhere. */
  constructor(private readonly stream: NodeJS.WritableStream & { isTTY?: boolean; columns?: number }) {}

  show(e: ProgressEvent): void {
    if (e.event === 'step') {
      const payload = {
        epoch: e.epoch,
        epochs: e.epochs,
        loss: e.skipped ? 'skipped' : e.loss.toFixed(4),
        rate: Math.round(e.samplesPerSecond),
        etaRun: formatDuration(e.etaSeconds),
      };
      if (this.bar === undefined) {
        this.bar = new cliProgress.SingleBar(
          { format: FORMAT, stream: this.stream, clearOnComplete: true, hideCursor: false, barsize: 24, fps: 5 },
          cliProgress.Presets.shades_classic,
        );
        this.bar.start(e.stepsPerEpoch, e.stepInEpoch, payload);
      } else {
        this.bar.update(e.stepInEpoch, payload);
      }
      return;
    }
    this.close();
    this.stream.write(`${e.event === 'epoch' ? epochLine(e) : textOf(e)}\n`);
  }

  close(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}
