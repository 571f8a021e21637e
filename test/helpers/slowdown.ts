// Sizes a straggler's injected slow-down (RINGTRAIN_FAULT_SLOW_RANK="rank:ms") from a run on this
// very machine, so that a test decides by who is slower, not by how fast the machine is: on a busy
// machine the ranks' compute times scatter (a descheduled process takes 5-10 times its median),
// and a fixed slow-down of a few tens of ms drowns in that scatter.
import { readMetrics } from '../../coordinator/run/run-directory.js';

/** Per-rank step timings as metrics.jsonl records them. */
export interface RankTimings {
  rank: number;
  computeMs: number;
  allreduceMs: number;
  allreduceWaitMs: number;
}

/** Every rank's compute time of every step in `metricsFile`, ascending. */
export function computeTimesMs(metricsFile: string): number[] {
  return readMetrics(metricsFile)
    .filter((r) => r['type'] === 'step')
    .flatMap((r) => (r['ranks'] as RankTimings[]).map((rank) => rank.computeMs))
    .sort((a, b) => a - b);
}

/**
 * A slow-down `factor` times the 90th percentile of the compute times measured in `metricsFile`
 * (at least `floorMs`): larger than all but the rarest scheduling hiccups of the other ranks.
 */
export function slowdownMs(metricsFile: string, factor = 4, floorMs = 100): number {
  const times = computeTimesMs(metricsFile);
  if (times.length === 0) throw new Error(`${metricsFile} records no step to measure`);
  const p90 = times[Math.min(times.length - 1, Math.floor(times.length * 0.9))] ?? 0;
  return Math.max(floorMs, Math.ceil(factor * p90));
}
