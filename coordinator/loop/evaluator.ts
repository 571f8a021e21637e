// Validation and test passes spread over the ring: each rank evaluates a contiguous share of the
// split and reports sums; the coordinator turns them into means.
import { encodeIndices } from '../../shared/index-codec.js';
import { evalShards } from '../../shared/shard-plan.js';
import type { Generation } from './membership.js';

export type SplitName = 'train' | 'validation' | 'test';

/** Mean loss and metrics over a split, e.g. { loss: 0.21, accuracy: 0.94 }. */
export type SplitMetrics = Record<string, number>;

export class Evaluator {
  private nextRequestId = 1;

  constructor(private readonly timeoutMs: number) {}

  /** Evaluates `count` samples of `split` on every member; returns undefined for an empty split. */
  async evaluate(generation: Generation, split: SplitName, count: number): Promise<SplitMetrics | undefined> {
    if (count === 0) return undefined;
    const requestId = this.nextRequestId++;
    const shards = evalShards(count, generation.members.length);
    for (const member of generation.members) {
      member.session.send({
        eval: { requestId, split, sampleIndices: encodeIndices(shards[member.rank] ?? new Uint32Array(0)) },
      });
    }
    const reports = await Promise.all(generation.members.map((m) => m.session.waitEval(requestId, this.timeoutMs)));
    let total = 0;
    let lossSum = 0;
    const sums: Record<string, number> = {};
    for (const report of reports) {
      total += report.count;
      lossSum += report.lossSum;
      for (const [name, value] of Object.entries(report.metricSums)) sums[name] = (sums[name] ?? 0) + value;
    }
    const metrics: SplitMetrics = { loss: lossSum / total };
    for (const [name, value] of Object.entries(sums)) metrics[name] = value / total;
    return metrics;
  }
}

/** Flattens { validation: { loss } } into { 'validation.loss': ... } for monitors and logs. */
export function prefixed(split: SplitName, metrics: SplitMetrics | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, value] of Object.entries(metrics ?? {})) out[`${split}.${name}`] = value;
  return out;
}
