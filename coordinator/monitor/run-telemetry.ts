// What the live dashboard shows, kept in memory from the records metrics.jsonl receives (steps,
// validations, events): the loss and metric curves, each rank's compute and wait over its recent
// steps, and the event list. Pure: fed by observe(), read by snapshot(); no timers, no I/O.
//
// Invariants: the curves and the event list are bounded (oldest dropped first); per-rank samples
// belong to the current generation only (a new generation renumbers ranks, so they start over).

/** The current ring as the coordinator knows it (undefined before the first ring formed). */
export interface RingView {
  generation: number;
  paramCount: number;
  members: ReadonlyArray<{ rank: number; host: string; pid: number }>;
}

/** One rank's timings of one step, as a metrics.jsonl step record carries them. */
export interface RankStepTimings {
  rank: number;
  samples: number;
  computeMs: number;
  allreduceMs: number;
  allreduceWaitMs: number;
}

/** A metrics.jsonl `type: "step"` record (the fields read here). */
export interface StepRecord {
  type: 'step';
  step: number;
  epoch: number;
  loss: number;
  samples: number;
  skipped: boolean;
  wallMs: number;
  ranks: RankStepTimings[];
}

export interface RankView {
  rank: number;
  host: string;
  pid: number;
  /** The recent steps, oldest first, and this rank's compute and all-reduce wait in each. */
  steps: number[];
  computeMs: number[];
  waitMs: number[];
  medianComputeMs: number;
  medianWaitMs: number;
  /** Computes slower than the ring's median by more than the job's stragglers.margin. */
  straggler: boolean;
  /** Spends much of its all-reduce waiting for a straggler. */
  waiting: boolean;
}

export interface TelemetrySnapshot {
  step: number;
  epoch: number;
  generation: number;
  worldSize: number;
  /** Samples per second over the recent steps (a window, never since the start). */
  samplesPerSecond: number;
  train: Array<{ step: number; loss: number }>;
  validation: Array<{ step: number; metrics: Record<string, number> }>;
  ring: RankView[];
  events: Array<Record<string, unknown>>;
}

export interface TelemetryOptions {
  /** Steps per rank kept for the ring view and the samples/s window. @default 20 */
  recentSteps?: number;
  /** Fraction above the median compute that marks a straggler (the job's stragglers.margin). @default 0.5 */
  stragglerMargin?: number;
  /** Curve points kept. @default 5000 */
  maxPoints?: number;
  /** Events kept. @default 500 */
  maxEvents?: number;
}

export class RunTelemetry {
  private readonly recentSteps: number;
  private readonly stragglerMargin: number;
  private readonly maxPoints: number;
  private readonly maxEvents: number;
  private readonly train: TelemetrySnapshot['train'] = [];
  private readonly validation: TelemetrySnapshot['validation'] = [];
  private readonly events: TelemetrySnapshot['events'] = [];
  private recent: StepRecord[] = [];
  private recentGeneration = -1;
  private lastStep = 0;
  private lastEpoch = 0;

  constructor(
    private readonly ring: () => RingView | undefined,
    options: TelemetryOptions = {},
  ) {
    this.recentSteps = options.recentSteps ?? 20;
    this.stragglerMargin = options.stragglerMargin ?? 0.5;
    this.maxPoints = options.maxPoints ?? 5000;
    this.maxEvents = options.maxEvents ?? 500;
  }

  /** Takes one metrics.jsonl record; other record types are ignored. */
  observe(record: Readonly<Record<string, unknown>>): void {
    if (record['type'] === 'step') this.observeStep(record as unknown as StepRecord);
    else if (record['type'] === 'validation') this.observeValidation(record);
    else if (record['type'] === 'event') bounded(this.events, { ...record }, this.maxEvents);
  }

  private observeStep(record: StepRecord): void {
    this.lastStep = record.step + 1;
    this.lastEpoch = record.epoch;
    if (!record.skipped) bounded(this.train, { step: record.step + 1, loss: record.loss }, this.maxPoints);
    const generation = this.ring()?.generation ?? 0;
    if (generation !== this.recentGeneration) {
      this.recent = [];
      this.recentGeneration = generation;
    }
    bounded(this.recent, record, this.recentSteps);
  }

  private observeValidation(record: Readonly<Record<string, unknown>>): void {
    const metrics: Record<string, number> = {};
    for (const [key, value] of Object.entries(record))
      if (key.startsWith('validation.') && typeof value === 'number') metrics[key.slice('validation.'.length)] = value;
    bounded(this.validation, { step: Number(record['step']), metrics }, this.maxPoints);
  }

  snapshot(): TelemetrySnapshot {
    const ring = this.ring();
    const samples = this.recent.reduce((sum, r) => sum + r.samples, 0);
    const seconds = this.recent.reduce((sum, r) => sum + r.wallMs, 0) / 1000;
    return {
      step: this.lastStep,
      epoch: this.lastEpoch,
      generation: ring?.generation ?? 0,
      worldSize: ring?.members.length ?? 0,
      samplesPerSecond: seconds > 0 ? samples / seconds : 0,
      train: this.train,
      validation: this.validation,
      ring: this.rankViews(ring),
      events: this.events,
    };
  }

  /** Each rank's recent compute and wait, with the straggler and the ranks waiting on it marked. */
  private rankViews(ring: RingView | undefined): RankView[] {
    const views: RankView[] = (ring?.members ?? []).map((member) => {
      const timings = this.recent.flatMap((r) =>
        r.ranks.filter((t) => t.rank === member.rank).map((t) => ({ step: r.step, ...t })),
      );
      const computeMs = timings.map((t) => t.computeMs);
      const waitMs = timings.map((t) => t.allreduceWaitMs);
      return {
        ...member,
        steps: timings.map((t) => t.step),
        computeMs,
        waitMs,
        medianComputeMs: median(computeMs),
        medianWaitMs: median(waitMs),
        straggler: false,
        waiting: false,
      };
    });
    if (views.length < 2) return views;
    // The same rule as the straggler detector, over the recent window: above the (lower) median by the margin.
    const ringMedian = median(views.map((v) => v.medianComputeMs));
    for (const view of views)
      view.straggler = ringMedian > 0 && view.medianComputeMs > ringMedian * (1 + this.stragglerMargin);
    const slowest = Math.max(...views.filter((v) => v.straggler).map((v) => v.medianComputeMs));
    // A rank that waits at least half of what the straggler computes longer than it is waiting on it.
    for (const view of views)
      view.waiting =
        !view.straggler && Number.isFinite(slowest) && view.medianWaitMs >= (slowest - view.medianComputeMs) / 2;
    return views;
  }
}

/** The lower median (of two values the smaller, as the straggler detector takes it); 0 for none. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)] ?? 0;
}

function bounded<T>(list: T[], item: T, max: number): void {
  list.push(item);
  if (list.length > max) list.splice(0, list.length - max);
}
