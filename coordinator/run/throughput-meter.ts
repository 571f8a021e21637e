// Samples per second as a person watching a run needs them: per window (the recent steps, the
// epoch), never a running average since the start, plus the run's overall and steady-state rate
// for its summary. Steady state leaves out the warm-up: the first epoch this process ran when the
// run spans more than one epoch, else the first tenth of its steps (JIT, wasm compilation and
// connection set-up make the first steps slow, and would drag an average down for good).
//
// Pure: fed one step at a time with its samples and wall time; no clock.

/** Steps in the recent window (the live rate and the ETA). */
export const RECENT_STEPS = 20;

export interface ThroughputFigures {
  /** Samples per second over every step this process ran. */
  samplesPerSecond: number;
  /** The same without the warm-up; undefined when too few steps ran to tell. */
  steadySamplesPerSecond: number | undefined;
}

interface Span {
  samples: number;
  seconds: number;
}

export class ThroughputMeter {
  private readonly recent: Span[] = [];
  private readonly firstEpochSteps: Span[] = [];
  private firstEpoch: number | undefined;
  private total: Span = { samples: 0, seconds: 0 };
  private epochSpan: Span = { samples: 0, seconds: 0 };
  private epochOfSpan: number | undefined;

  add(epoch: number, samples: number, seconds: number): void {
    const span = { samples, seconds };
    this.firstEpoch ??= epoch;
    if (epoch === this.firstEpoch) this.firstEpochSteps.push(span);
    if (epoch !== this.epochOfSpan) {
      this.epochSpan = { samples: 0, seconds: 0 };
      this.epochOfSpan = epoch;
    }
    this.epochSpan = plus(this.epochSpan, span);
    this.total = plus(this.total, span);
    this.recent.push(span);
    if (this.recent.length > RECENT_STEPS) this.recent.shift();
  }

  /** Samples per second over the last RECENT_STEPS steps. */
  recentRate(): number {
    return rate(this.recent.reduce(plus, { samples: 0, seconds: 0 }));
  }

  /** Seconds per step over the last RECENT_STEPS steps (for the ETA); 0 before any step. */
  recentSecondsPerStep(): number {
    return this.recent.length === 0 ? 0 : this.recent.reduce((sum, s) => sum + s.seconds, 0) / this.recent.length;
  }

  /** Samples per second over the steps of `epoch` run by this process (0 if none). */
  epochRate(epoch: number): number {
    return epoch === this.epochOfSpan ? rate(this.epochSpan) : 0;
  }

  /** Seconds of training (step wall time) in `epoch`. */
  epochSeconds(epoch: number): number {
    return epoch === this.epochOfSpan ? this.epochSpan.seconds : 0;
  }

  figures(): ThroughputFigures {
    const first = this.firstEpochSteps.reduce(plus, { samples: 0, seconds: 0 });
    let steady: Span | undefined;
    if (this.total.samples > first.samples) {
      steady = { samples: this.total.samples - first.samples, seconds: this.total.seconds - first.seconds };
    } else if (this.firstEpochSteps.length >= 10) {
      const warmup = this.firstEpochSteps.slice(0, Math.ceil(this.firstEpochSteps.length / 10)).reduce(plus, {
        samples: 0,
        seconds: 0,
      });
      steady = { samples: this.total.samples - warmup.samples, seconds: this.total.seconds - warmup.seconds };
    }
    return {
      samplesPerSecond: rate(this.total),
      steadySamplesPerSecond: steady === undefined ? undefined : rate(steady),
    };
  }
}

function plus(a: Span, b: Span): Span {
  return { samples: a.samples + b.samples, seconds: a.seconds + b.seconds };
}

function rate(span: Span): number {
  return span.seconds > 0 ? span.samples / span.seconds : 0;
}
