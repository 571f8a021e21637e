// The run's Prometheus metrics (prom-client), all named ringtrain_*, updated from the same
// metrics.jsonl records as the dashboard. A registry per run, so two runs in one process (the
// library's train() called twice) never share or clash over a metric.
//
// Bandwidth is reported the way nccl-tests does (ARCHITECTURE.md): the all-reduced buffer is the
// flat gradient, paramCount float32 values; algbw = bytes / time and busbw = algbw · 2(N−1)/N,
// where time is the slowest rank's all-reduce minus its wait for its neighbour (skew, not transfer).
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { RingView, StepRecord } from './run-telemetry.js';

const STEP_SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class PrometheusMetrics {
  readonly registry = new Registry();
  private readonly trainLoss: Gauge;
  private readonly lastStep: Gauge;
  private readonly steps: Counter;
  private readonly skippedSteps: Counter;
  private readonly stepSeconds: Histogram;
  private readonly samplesPerSecond: Gauge;
  private readonly validation: Gauge<'metric'>;
  private readonly allreduceBytes: Counter;
  private readonly busBandwidth: Gauge;
  private readonly rankCompute: Gauge<'rank'>;
  private readonly rankWait: Gauge<'rank'>;
  private readonly rankComputeTotal: Counter<'rank'>;
  private readonly rankWaitTotal: Counter<'rank'>;
  private readonly recoveries: Counter;
  private readonly events: Counter<'kind'>;

  constructor(private readonly ring: () => RingView | undefined) {
    const registers = [this.registry];
    const gauge = <L extends string = never>(name: string, help: string, labelNames: L[] = []): Gauge<L> =>
      new Gauge({ name: `ringtrain_${name}`, help, labelNames, registers });
    const counter = <L extends string = never>(name: string, help: string, labelNames: L[] = []): Counter<L> =>
      new Counter({ name: `ringtrain_${name}`, help, labelNames, registers });
    this.trainLoss = gauge('train_loss', 'Mean training loss of the last step over its global batch');
    this.lastStep = gauge('step', 'Global steps done (the step of the last record + 1)');
    this.steps = counter('steps_total', 'Steps this coordinator ran, skipped ones included');
    this.skippedSteps = counter('skipped_steps_total', 'Steps whose update was skipped for a non-finite gradient');
    this.stepSeconds = new Histogram({
      name: 'ringtrain_step_duration_seconds',
      help: "Wall time of one step as the coordinator saw it (orders out to every rank's report in)",
      buckets: STEP_SECONDS_BUCKETS,
      registers,
    });
    this.samplesPerSecond = gauge('samples_per_second', 'Training samples per second of the last step');
    this.validation = gauge('validation_metric', 'Last validation value of each metric (loss included)', ['metric']);
    this.allreduceBytes = counter(
      'allreduce_bytes_total',
      'Bytes of gradient buffers all-reduced (buffer size × steps)',
    );
    this.busBandwidth = gauge(
      'allreduce_bus_bandwidth_bytes_per_second',
      'Bus bandwidth of the last step gradient all-reduce: bytes / time × 2(N−1)/N',
    );
    this.rankCompute = gauge('rank_compute_seconds', "Each rank's forward/backward time in the last step", ['rank']);
    this.rankWait = gauge('rank_allreduce_wait_seconds', "Each rank's wait for its neighbour in the last step", [
      'rank',
    ]);
    this.rankComputeTotal = counter('rank_compute_seconds_total', "Each rank's forward/backward time, summed", [
      'rank',
    ]);
    this.rankWaitTotal = counter('rank_allreduce_wait_seconds_total', "Each rank's all-reduce wait, summed", ['rank']);
    this.recoveries = counter('recoveries_total', 'Rings re-formed after a failure without losing steps');
    this.events = counter('events_total', 'Job events by kind (join, failure, eviction, recovery, ...)', ['kind']);
    // Membership is read when scraped, so it is current even between steps.
    new Gauge({
      name: 'ringtrain_world_size',
      help: 'Ranks in the current ring',
      registers,
      collect() {
        this.set(ring()?.members.length ?? 0);
      },
    });
    new Gauge({
      name: 'ringtrain_generation',
      help: 'Current membership generation (each change of membership starts a new one)',
      registers,
      collect() {
        this.set(ring()?.generation ?? 0);
      },
    });
  }

  /** Takes one metrics.jsonl record; other record types are ignored. */
  observe(record: Readonly<Record<string, unknown>>): void {
    if (record['type'] === 'step') this.observeStep(record as unknown as StepRecord);
    else if (record['type'] === 'validation') {
      for (const [key, value] of Object.entries(record))
        if (key.startsWith('validation.') && typeof value === 'number')
          this.validation.set({ metric: key.slice('validation.'.length) }, value);
    } else if (record['type'] === 'event' && typeof record['kind'] === 'string') {
      this.events.inc({ kind: record['kind'] });
      if (record['kind'] === 'recovery') this.recoveries.inc();
    }
  }

  private observeStep(record: StepRecord): void {
    this.steps.inc();
    this.lastStep.set(record.step + 1);
    if (record.skipped) this.skippedSteps.inc();
    else this.trainLoss.set(record.loss);
    this.stepSeconds.observe(record.wallMs / 1000);
    if (record.wallMs > 0) this.samplesPerSecond.set(record.samples / (record.wallMs / 1000));
    for (const rank of record.ranks) {
      const label = { rank: String(rank.rank) };
      this.rankCompute.set(label, rank.computeMs / 1000);
      this.rankWait.set(label, rank.allreduceWaitMs / 1000);
      this.rankComputeTotal.inc(label, rank.computeMs / 1000);
      this.rankWaitTotal.inc(label, rank.allreduceWaitMs / 1000);
    }
    const bytes = (this.ring()?.paramCount ?? 0) * 4;
    this.allreduceBytes.inc(bytes);
    const n = record.ranks.length;
    const transferMs = Math.max(0, ...record.ranks.map((r) => r.allreduceMs - r.allreduceWaitMs));
    if (n > 1 && transferMs > 0) this.busBandwidth.set((bytes / (transferMs / 1000)) * ((2 * (n - 1)) / n));
  }

  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
