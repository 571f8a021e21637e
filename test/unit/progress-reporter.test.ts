import { Writable } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';
import type { StepOutcome } from '../../coordinator/loop/step-driver.js';
import { LiveProgressView } from '../../coordinator/run/live-progress-view.js';
import { epochLine, formatDuration, type ProgressEvent } from '../../coordinator/run/progress-events.js';
import {
  JsonProgressView,
  PlainProgressView,
  ProgressReporter,
  QuietProgressView,
} from '../../coordinator/run/progress-reporter.js';
import { ThroughputMeter } from '../../coordinator/run/throughput-meter.js';
import { ManualClock } from '../helpers/manual-clock.js';

function outcome(step: number, wallMs: number, globalCount = 32, loss = 1): StepOutcome {
  return { step, loss, globalCount, skipped: false, gradNorm: 1, wallMs, ranks: [], paramHash: '' };
}

const END = { status: 'completed', step: 8, plannedSteps: 8, runDir: '/runs/x', text: 'ringtrain: completed' } as const;

/** Two epochs of 4 steps: the first at 100 ms a step (320 samples/s), the second at 50 ms (640). */
function twoEpochs(reporter: ProgressReporter, onStep: () => void = () => undefined): void {
  reporter.planRun({ lastStep: 8, stepsPerEpoch: 4, epochs: 2 });
  for (let step = 0; step < 8; step++) {
    reporter.step(outcome(step, step < 4 ? 100 : 50));
    onStep();
    if (step % 4 === 3)
      reporter.epochEnd({ epoch: step >> 2, epochs: 2, step: step + 1, trainLoss: 0.5, validation: { loss: 0.25 } });
  }
  reporter.final('test', { loss: 0.3, accuracy: 0.9 });
  reporter.end(END);
}

describe('ThroughputMeter', () => {
  it('rates the recent window and the epoch, never the run since its start', () => {
    const meter = new ThroughputMeter();
    for (let i = 0; i < 30; i++) meter.add(0, 10, 1); // 10 samples/s
    for (let i = 0; i < 20; i++) meter.add(1, 10, 0.1); // 100 samples/s
    expect(meter.recentRate()).toBeCloseTo(100, 9);
    expect(meter.recentSecondsPerStep()).toBeCloseTo(0.1, 9);
    expect(meter.epochRate(1)).toBeCloseTo(100, 9);
    expect(meter.epochSeconds(1)).toBeCloseTo(2, 9);
    const { samplesPerSecond, steadySamplesPerSecond } = meter.figures();
    expect(samplesPerSecond).toBeCloseTo(500 / 32, 9);
    expect(steadySamplesPerSecond).toBeCloseTo(100, 9); // without epoch 0, the warm-up
  });

  it('leaves out the first tenth of a one-epoch run as its warm-up, and says nothing of a too-short one', () => {
    const meter = new ThroughputMeter();
    meter.add(0, 10, 10);
    for (let i = 0; i < 9; i++) meter.add(0, 10, 0.5);
    expect(meter.figures().steadySamplesPerSecond).toBeCloseTo(20, 9);
    const short = new ThroughputMeter();
    short.add(3, 10, 1);
    expect(short.figures()).toEqual({ samplesPerSecond: 10, steadySamplesPerSecond: undefined });
  });
});

describe('plain progress', () => {
  it('prints one line per epoch with that epoch’s own samples/s, then the throughput and the final line', () => {
    const lines: string[] = [];
    twoEpochs(new ProgressReporter(new PlainProgressView((l) => lines.push(l), { now: () => 0 })));
    expect(lines).toEqual([
      'epoch 1/2  train loss 0.5000  validation loss 0.2500  320 samples/s  0s',
      'epoch 2/2  train loss 0.5000  validation loss 0.2500  640 samples/s  0s',
      'test accuracy 0.9000  test loss 0.3000',
      'throughput 427 samples/s overall, 640 samples/s steady (without the warm-up)',
      'ringtrain: completed',
    ]);
  });

  it('adds a step line with the ETA every intervalMs within a long epoch', () => {
    const clock = new ManualClock();
    const lines: string[] = [];
    const reporter = new ProgressReporter(
      new PlainProgressView((l) => lines.push(l), { intervalMs: 30_000, now: () => clock.now() }),
    );
    twoEpochs(reporter, () => clock.advance(20_000));
    // 20 s a step: a line 40 s after the first step and 40 s after the epoch line (never at an
    // epoch's last step, which has its own line); the rate is over the recent steps.
    expect(lines.filter((l) => l.includes('ETA'))).toEqual([
      'epoch 1/2  step 3/8  loss 1.0000  320 samples/s  ETA 1s',
      'epoch 2/2  step 7/8  loss 1.0000  407 samples/s  ETA 0s',
    ]);
    expect(lines.filter((l) => /^epoch \d\/2 {2}train loss/.test(l))).toHaveLength(2);
  });
});

describe('quiet and json progress', () => {
  it('a run that ran no step (a finished run resumed) prints no throughput', () => {
    const lines: string[] = [];
    new ProgressReporter(new PlainProgressView((l) => lines.push(l))).end(END);
    expect(lines).toEqual(['ringtrain: completed']);
  });

  it('--quiet prints the final line only', () => {
    const lines: string[] = [];
    const reporter = new ProgressReporter(new QuietProgressView((l) => lines.push(l)));
    reporter.note('ringtrain: run /runs/x');
    twoEpochs(reporter);
    expect(lines).toEqual(['ringtrain: completed']);
  });

  it('--json prints every event as one JSON object per line', () => {
    const lines: string[] = [];
    twoEpochs(new ProgressReporter(new JsonProgressView((l) => lines.push(l))));
    const events = lines.map((l) => JSON.parse(l) as ProgressEvent);
    expect(events.map((e) => e.event)).toEqual([
      ...Array<string>(4).fill('step'),
      'epoch',
      ...Array<string>(4).fill('step'),
      'epoch',
      'metrics',
      'throughput',
      'end',
    ]);
    expect(events[3]).toMatchObject({ event: 'step', epoch: 1, step: 4, stepInEpoch: 4, etaSeconds: 0.4 });
    expect(events[9]).toMatchObject({ event: 'epoch', epoch: 2, samplesPerSecond: 640 });
    expect(events.at(-1)).toEqual({ event: 'end', ...END });
  });
});

/** A terminal as cli-progress sees one: a real stream that says it is a TTY, keeping what is written. */
class FakeTerminal extends Writable {
  readonly isTTY = true;
  readonly columns = 160;
  text = '';

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

describe('live progress on a TTY', () => {
  it('draws a bar with step, loss, samples/s and ETA, replaced by one line per epoch', async () => {
    const terminal = new FakeTerminal();
    const view = new LiveProgressView(terminal);
    twoEpochs(new ProgressReporter(view));
    view.close();
    await new Promise((resolve) => setImmediate(resolve));
    // eslint-disable-next-line no-control-regex
    const plain = terminal.text.replace(/\u001b\[[0-9;?]*[A-Za-z]|\u001b[78]/g, '');
    expect(plain).toMatch(/epoch 1\/2 \S+ 1\/4 \| loss 1\.0000 \| 320 samples\/s \| ETA 1s/);
    expect(plain).toMatch(/epoch 2\/2 \S+ 1\/4 \| loss 1\.0000 \| \d+ samples\/s \| ETA 0s/);
    const epochAt = plain.indexOf(epochLine({ ...EPOCH_1 }));
    expect(epochAt).toBeGreaterThan(plain.indexOf('epoch 1/2 '));
    expect(plain.indexOf('epoch 2/2 ')).toBeGreaterThan(epochAt);
    expect(plain.trimEnd().endsWith('ringtrain: completed')).toBe(true);
  });
});

const EPOCH_1 = {
  event: 'epoch',
  epoch: 1,
  epochs: 2,
  step: 4,
  trainLoss: 0.5,
  validation: { loss: 0.25 },
  samplesPerSecond: 320,
  seconds: 0.4,
} as const;

describe('formatting', () => {
  it('writes durations short', () => {
    expect([0, 42.4, 185, 3725, Number.NaN].map(formatDuration)).toEqual(['0s', '42s', '3m05s', '1h02m', '?']);
  });

  it('prefixes an embedded worker’s stderr lines with its rank, which follows the ring it joins', async () => {
    vi.resetModules();
    vi.stubEnv('RINGTRAIN_STDERR_RANK', '2');
    try {
      const prefix = await import('../../shared/stderr-prefix.js');
      expect(prefix.stderrPrefixed('{"level":40}\nringtrain: gone\n')).toBe(
        '[rank 2] {"level":40}\n[rank 2] ringtrain: gone\n',
      );
      prefix.setStderrRank(0);
      expect(prefix.stderrPrefixed('x\n')).toBe('[rank 0] x\n');
    } finally {
      vi.unstubAllEnvs();
      vi.resetModules();
    }
    const off = await import('../../shared/stderr-prefix.js');
    off.setStderrRank(1);
    expect(off.stderrPrefixed('x\n')).toBe('x\n');
  });
});
