// The dashboard's state from metrics.jsonl records: curves, the ring with its straggler and the
// ranks waiting on it, bounded lists, and per-rank samples that start over with a new generation.
import { describe, expect, it } from 'vitest';
import { RunTelemetry, type RingView, type StepRecord } from '../../coordinator/monitor/run-telemetry.js';

function ringOf(generation: number, ranks: number): RingView {
  return {
    generation,
    paramCount: 10,
    members: Array.from({ length: ranks }, (_, rank) => ({ rank, host: `h${rank}`, pid: 100 + rank })),
  };
}

/** A step where each rank computed computeMs[rank] and waited waitMs[rank]. */
function step(n: number, computeMs: number[], waitMs: number[], skipped = false): StepRecord {
  return {
    type: 'step',
    step: n,
    epoch: 0,
    loss: 1 / (n + 1),
    samples: 32,
    skipped,
    wallMs: 100,
    ranks: computeMs.map((c, rank) => ({
      rank,
      samples: 16,
      computeMs: c,
      allreduceMs: 5 + (waitMs[rank] ?? 0),
      allreduceWaitMs: waitMs[rank] ?? 0,
    })),
  };
}

describe('RunTelemetry', () => {
  it('marks the rank computing slower than the median by the margin, and the ranks waiting on it', () => {
    const telemetry = new RunTelemetry(() => ringOf(1, 3), { stragglerMargin: 0.5 });
    for (let n = 0; n < 5; n++) telemetry.observe({ ...step(n, [10, 40, 11], [30, 0, 1]) });
    const ring = telemetry.snapshot().ring;
    expect(ring.map((r) => r.straggler)).toEqual([false, true, false]);
    // Rank 0 waits 30 ms of the 30 ms rank 1 computes longer; rank 2 hardly waits.
    expect(ring.map((r) => r.waiting)).toEqual([true, false, false]);
    expect(ring[1]).toMatchObject({ host: 'h1', pid: 101, medianComputeMs: 40, steps: [0, 1, 2, 3, 4] });
  });

  it('marks no straggler when the ranks compute alike', () => {
    const telemetry = new RunTelemetry(() => ringOf(1, 2), { stragglerMargin: 0.5 });
    for (let n = 0; n < 5; n++) telemetry.observe({ ...step(n, [10, 12], [2, 0]) });
    expect(telemetry.snapshot().ring.map((r) => [r.straggler, r.waiting])).toEqual([
      [false, false],
      [false, false],
    ]);
  });

  it('keeps curves and events bounded, leaves skipped steps off the loss curve, reads validation metrics', () => {
    const telemetry = new RunTelemetry(() => ringOf(1, 1), { maxPoints: 3, maxEvents: 2, recentSteps: 2 });
    for (let n = 0; n < 5; n++) telemetry.observe({ ...step(n, [10], [0], n === 4) });
    for (let n = 0; n < 3; n++)
      telemetry.observe({ type: 'event', kind: 'join', rank: n, step: n, at: '', detail: '' });
    telemetry.observe({
      type: 'validation',
      step: 5,
      epoch: 0,
      'train.loss': 2,
      'validation.loss': 0.5,
      'validation.accuracy': 0.9,
    });
    const state = telemetry.snapshot();
    expect(state.train.map((p) => p.step)).toEqual([2, 3, 4]);
    expect(state.step).toBe(5);
    expect(state.events.map((e) => e['rank'])).toEqual([1, 2]);
    expect(state.validation).toEqual([{ step: 5, metrics: { loss: 0.5, accuracy: 0.9 } }]);
    expect(state.ring[0]?.steps).toEqual([3, 4]);
    expect(state.samplesPerSecond).toBeCloseTo(64 / 0.2, 9);
  });

  it('starts the per-rank samples over when the generation changes (ranks are renumbered)', () => {
    let ring = ringOf(1, 2);
    const telemetry = new RunTelemetry(() => ring);
    telemetry.observe({ ...step(0, [10, 10], [0, 0]) });
    ring = ringOf(2, 2);
    telemetry.observe({ ...step(1, [10, 10], [0, 0]) });
    expect(telemetry.snapshot().ring[0]?.steps).toEqual([1]);
    expect(telemetry.snapshot().generation).toBe(2);
  });
});
