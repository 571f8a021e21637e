// TensorBoard event files of a run, under <run>/tensorboard/, written from the records that
// metrics.jsonl receives (RunDirectory.onRecord), so the charts show exactly what the file holds.
//
//   step record        -> train/loss, train/learning_rate, train/samples_per_second,
//                         train/gradient_norm, ring/world_size, ranks/<r>/compute_ms, ranks/<r>/wait_ms
//   validation record  -> validation/<metric> (validation/loss, validation/accuracy, ...)
//   recovery event     -> ring/recoveries (the count so far); skipped step -> train/skipped_steps
//
// The TensorBoard step is the number of steps done (a step record's `step` + 1), as validation
// records count it. One file per coordinator process (a resumed run adds a file; TensorBoard
// reads them all in order).
//
// Invariants: a failure to write (disk full) is logged once and ends the writing, never the run;
// every record is framed whole (length, CRC, data, CRC) in one write.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Logger } from '../../shared/logger.js';
import { readMetrics, type RunDirectory } from '../run/run-directory.js';
import { encodeEvent, FILE_VERSION } from './event-codec.js';
import { frameTfRecord } from './tfrecord.js';

export const TENSORBOARD_DIR = 'tensorboard';

interface RankTimings {
  rank: number;
  computeMs: number;
  allreduceWaitMs: number;
}

export class TensorBoardWriter {
  private fd: number | undefined;
  private recoveries: number;
  private skippedSteps: number;
  private unsubscribe: (() => void) | undefined;

  private constructor(
    readonly file: string,
    private readonly logger: Logger,
    counts: { recoveries: number; skippedSteps: number },
  ) {
    this.recoveries = counts.recoveries;
    this.skippedSteps = counts.skippedSteps;
  }

  /** Opens a new event file in <run>/tensorboard/ and writes every record the run appends from now on. */
  static open(runDir: RunDirectory, logger: Logger, now = new Date()): TensorBoardWriter {
    const dir = path.join(runDir.path, TENSORBOARD_DIR);
    fs.mkdirSync(dir, { recursive: true });
    const seconds = Math.floor(now.getTime() / 1000);
    const file = path.join(dir, `events.out.tfevents.${seconds}.${os.hostname()}.${process.pid}.ringtrain`);
    // A resumed run continues its counters from what metrics.jsonl already holds.
    const earlier = readMetrics(runDir.metricsFile).filter((r) => r['type'] === 'event');
    const writer = new TensorBoardWriter(file, logger, {
      recoveries: earlier.filter((r) => r['kind'] === 'recovery').length,
      skippedSteps: earlier.filter((r) => r['kind'] === 'skipped-step').length,
    });
    writer.fd = fs.openSync(file, 'a');
    writer.write({ wallTime: now.getTime() / 1000, step: 0, fileVersion: FILE_VERSION });
    writer.unsubscribe = runDir.onRecord((record) => writer.observe(record));
    return writer;
  }

  /** open(), or undefined after a warning when the folder or file cannot be made (a full disk): TensorBoard never stops a run. */
  static openOrWarn(runDir: RunDirectory, logger: Logger): TensorBoardWriter | undefined {
    try {
      return TensorBoardWriter.open(runDir, logger);
    } catch (error) {
      logger.warn({ err: error, runDir: runDir.path }, 'cannot write TensorBoard events for this run');
      return undefined;
    }
  }

  /** Takes one metrics.jsonl record; records of other types are ignored. */
  observe(record: Readonly<Record<string, unknown>>): void {
    const wallTime = wallTimeOf(record);
    if (record['type'] === 'step' && typeof record['loss'] === 'number') {
      const step = Number(record['step']) + 1;
      this.scalars(step, wallTime, stepScalars(record));
    } else if (record['type'] === 'validation') {
      const values: Record<string, number> = {};
      for (const [key, value] of Object.entries(record))
        if (key.startsWith('validation.') && typeof value === 'number')
          values[`validation/${key.slice('validation.'.length)}`] = value;
      this.scalars(Number(record['step']), wallTime, values);
    } else if (record['type'] === 'event' && record['kind'] === 'recovery') {
      this.recoveries += 1;
      this.scalars(Number(record['step']), wallTime, { 'ring/recoveries': this.recoveries });
    } else if (record['type'] === 'event' && record['kind'] === 'skipped-step') {
      this.skippedSteps += 1;
      this.scalars(Number(record['step']) + 1, wallTime, { 'train/skipped_steps': this.skippedSteps });
    }
  }

  /** Stops reading the run and closes the file. Idempotent. */
  close(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    try {
      fs.fsyncSync(fd);
    } catch {
      // What could be written was written; the run's own files decide its fate.
    } finally {
      fs.closeSync(fd);
    }
  }

  private scalars(step: number, wallTime: number, values: Record<string, number>): void {
    const value = Object.entries(values)
      .filter(([, v]) => Number.isFinite(v))
      .map(([tag, simpleValue]) => ({ tag, simpleValue }));
    if (value.length > 0) this.write({ wallTime, step, summary: { value } });
  }

  private write(event: Parameters<typeof encodeEvent>[0]): void {
    if (this.fd === undefined) return;
    try {
      fs.writeSync(this.fd, frameTfRecord(encodeEvent(event)));
    } catch (error) {
      this.logger.warn({ err: error, file: this.file }, 'cannot write TensorBoard events; no more are written');
      const fd = this.fd;
      this.fd = undefined;
      fs.closeSync(fd);
    }
  }
}

function stepScalars(record: Readonly<Record<string, unknown>>): Record<string, number> {
  const values: Record<string, number> = { 'train/loss': Number(record['loss']) };
  if (typeof record['learningRate'] === 'number') values['train/learning_rate'] = record['learningRate'];
  const wallMs = Number(record['wallMs']);
  if (wallMs > 0) values['train/samples_per_second'] = Number(record['samples']) / (wallMs / 1000);
  if (typeof record['gradNorm'] === 'number') values['train/gradient_norm'] = record['gradNorm'];
  const ranks = Array.isArray(record['ranks']) ? (record['ranks'] as RankTimings[]) : [];
  if (ranks.length > 0) values['ring/world_size'] = ranks.length;
  for (const rank of ranks) {
    values[`ranks/${rank.rank}/compute_ms`] = rank.computeMs;
    values[`ranks/${rank.rank}/wait_ms`] = rank.allreduceWaitMs;
  }
  return values;
}

function wallTimeOf(record: Readonly<Record<string, unknown>>): number {
  const at = typeof record['at'] === 'string' ? Date.parse(record['at']) : Number.NaN;
  return (Number.isFinite(at) ? at : Date.now()) / 1000;
}
