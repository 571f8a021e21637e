// The coordinator's loop over in-memory workers (test/helpers/memory-workers.ts): the step plan
// each rank gets, epoch/validation/checkpoint boundaries, orders sent ahead, and regroup after
// failures. Real membership, elastic loop, run directory and checkpoint store; only the workers
// are in memory. Nothing here reads wall time: timeouts fire when the test advances its clock.
import { afterEach, describe, expect, it } from 'vitest';
import { PreemptedError, StoppedBySignalError, WorkerFailedError } from '../../shared/errors.js';
import type { Job } from '../../shared/job-schema.js';
import { learningRateAt } from '../../shared/lr-schedule.js';
import { batchesPerEpoch, cursorOf, epochOrder, globalBatch, shardFor } from '../../shared/shard-plan.js';
import { loopJob, memoryCoordinator, type MemoryCoordinator } from '../helpers/memory-coordinator.js';
import { applyBatch, type LogEntry, type MemoryState, type MemoryWorker } from '../helpers/memory-workers.js';

const opened: MemoryCoordinator[] = [];
afterEach(async () => {
  for (const c of opened.splice(0)) await c.dispose();
});

async function coordinator(
  workers: number,
  bounds: { min: number; max: number },
  job: Job = loopJob(),
  evalLoss?: (split: string, step: number) => number,
): Promise<MemoryCoordinator> {
  const c = await memoryCoordinator({ job, workers, bounds, ...(evalLoss !== undefined ? { evalLoss } : {}) });
  opened.push(c);
  return c;
}

function batchAt(job: Job, trainCount: number, step: number): Uint32Array {
  const { epoch, batchInEpoch } = cursorOf(step, trainCount, job.training.batchSize);
  return globalBatch(epochOrder(trainCount, job.seed, epoch), job.training.batchSize, batchInEpoch);
}

/** The state an undisturbed run holds after `steps` steps, whatever its world size. */
function expectedState(job: Job, trainCount: number, steps: number): MemoryState {
  let state: MemoryState = { step: 0, value: 0 };
  for (let step = 0; step < steps; step++) {
    const batch = batchAt(job, trainCount, step);
    state = applyBatch(
      state,
      batch.reduce((a, b) => a + b, 0),
      batch.length,
    );
  }
  return state;
}

const totalSteps = (c: MemoryCoordinator): number =>
  batchesPerEpoch(c.dataset.train.count, c.job.training.batchSize) * c.job.training.epochs;

const orders = (w: MemoryWorker, generation: number): Array<Extract<LogEntry, { event: 'order' }>> =>
  w.log.filter((e): e is Extract<LogEntry, { event: 'order' }> => e.event === 'order' && e.generation === generation);

const indexOf = (w: MemoryWorker, match: (e: LogEntry) => boolean): number => w.log.findIndex(match);

/** Every live worker of the final ring holds the undisturbed run's final state, reached step by step. */
function expectFinishedConsistently(c: MemoryCoordinator, workers: MemoryWorker[]): void {
  const expected = expectedState(c.job, c.dataset.train.count, totalSteps(c));
  for (const w of workers) {
    expect(w.state, w.label).toEqual(expected);
    expect(w.inconsistencies, w.label).toEqual([]);
  }
}

describe('the step plan', () => {
  it('sends each rank its slice of the seeded global batch, with the schedule, for every world size', async () => {
    const finals: MemoryState[] = [];
    for (const worldSize of [1, 2, 3]) {
      const job = loopJob({ schedule: { type: 'cosine', warmupSteps: 2 } });
      const c = await coordinator(worldSize, { min: worldSize, max: worldSize }, job);
      const { result } = await c.train();
      const trainCount = c.dataset.train.count;
      const steps = totalSteps(c);
      expect(result.finalStep).toBe(steps);
      for (const w of c.joined) {
        const received = orders(w, 1);
        expect(received.map((o) => o.step)).toEqual(Array.from({ length: steps }, (_, s) => s));
        for (const { step, order } of received) {
          const batch = batchAt(job, trainCount, step);
          const cursor = cursorOf(step, trainCount, job.training.batchSize);
          expect([...order.indices]).toEqual([...shardFor(batch, w.rank, worldSize)]);
          expect(order).toMatchObject({
            epoch: cursor.epoch,
            batchInEpoch: cursor.batchInEpoch,
            globalBatchSize: batch.length,
            learningRate: learningRateAt(step, job.optimizer.learningRate, job.schedule, job.training.batchSize, steps),
          });
        }
      }
      // The ranks' slices make up exactly the global batch: the loss the ring reports is its mean.
      const losses = c.stepRecords().map((r) => r['loss']);
      expect(losses).toEqual(
        Array.from({ length: steps }, (_, s) => {
          const batch = batchAt(job, trainCount, s);
          return batch.reduce((a, b) => a + b, 0) / batch.length;
        }),
      );
      expectFinishedConsistently(c, c.joined);
      finals.push(c.joined[0]?.state ?? { step: -1, value: -1 });
    }
    expect(finals[1]).toEqual(finals[0]);
    expect(finals[2]).toEqual(finals[0]);
  });
});

describe('boundaries', () => {
  // 6 steps an epoch, 12 in all; validate every 4 steps and at epoch ends, checkpoint every 5
  // steps, at epoch ends and after the last step.
  const boundaryJob = (): Job =>
    loopJob({ validation: { everySteps: 4 }, checkpoint: { everySteps: 5, keep: 100, atEpochEnd: true } });

  it('validates, checkpoints and closes epochs after the right steps', async () => {
    const c = await coordinator(3, { min: 3, max: 3 }, boundaryJob());
    await c.train();
    const validations = c.validationRecords();
    expect(validations.map((r) => r['step'])).toEqual([4, 6, 8, 12]);
    // Evaluated on the state after that many steps, over the whole split, spread over the ranks.
    const validationCount = c.dataset.validation.count;
    const evens = Math.ceil(validationCount / 2);
    for (const record of validations) {
      const step = Number(record['step']);
      expect(record['validation.loss']).toBeCloseTo(1 / (1 + step), 12);
      expect(record['validation.accuracy']).toBeCloseTo(evens / validationCount, 12);
    }
    for (let v = 0; v < validations.length; v++) {
      const covered = c.joined.flatMap((w) => [...(w.log.filter((e) => e.event === 'eval')[v]?.indices ?? [])]);
      expect(covered.sort((a, b) => a - b)).toEqual(Array.from({ length: validationCount }, (_, i) => i));
    }
    const saved = (await c.checkpoints.list()).map((i) => i.step);
    expect(saved).toEqual([5, 6, 10, 12]);
    for (const step of saved) {
      const { state } = await c.checkpoints.load(step);
      expect(JSON.parse(Buffer.from(state).toString('utf8'))).toEqual(
        expectedState(c.job, c.dataset.train.count, step),
      );
    }
    expectFinishedConsistently(c, c.joined);
  });

  it("sends step s+1's orders before step s reports, but never across a boundary", async () => {
    const c = await coordinator(3, { min: 3, max: 3 }, boundaryJob());
    await c.train();
    // Steps after which something happens (validation after 4, 6, 8, 12; checkpoints after 5, 6, 10, 12).
    const boundaryAfter = new Set([3, 4, 5, 7, 9, 11]);
    for (const w of c.joined) {
      for (let s = 0; s + 1 < totalSteps(c); s++) {
        const reported = indexOf(w, (e) => e.event === 'report' && e.step === s);
        const nextOrder = indexOf(w, (e) => e.event === 'order' && e.step === s + 1);
        expect(reported, `report ${s}`).toBeGreaterThanOrEqual(0);
        if (boundaryAfter.has(s))
          expect(nextOrder, `${w.label}: order ${s + 1} waits for report ${s}`).toBeGreaterThan(reported);
        else expect(nextOrder, `${w.label}: order ${s + 1} goes out before report ${s}`).toBeLessThan(reported);
      }
    }
  });

  it('stops at the next boundary on a stop signal, with a checkpoint there', async () => {
    const c = await coordinator(2, { min: 2, max: 2 });
    // Stop while step 2 runs: rank 0 holds its report until the signal is given.
    c.joined[0]?.when({ on: 'step', step: 2 }, { do: 'hold' });
    const run = c.train();
    // Release only once the answer is held: order 3 can arrive while step 2 still waits for rank 1.
    const r0 = c.joined[0] as MemoryWorker;
    await until(() => r0.holding > 0 && r0.log.some((e) => e.event === 'order' && e.step === 3));
    c.stop.abort();
    r0.release();
    const { result } = await run;
    expect(result.preempted).toBe(true);
    // Step 3 was already sent ahead and runs to its end; the stop takes effect at the boundary after it.
    expect(result.finalStep).toBe(4);
    expect((await c.checkpoints.list()).map((i) => i.step)).toEqual([4]);
    expect(c.events.events.map((e) => e.kind)).toEqual(['preempted']);
  });
});

describe('regroup after a failure', () => {
  it('continues with the survivors in a new generation from the step that failed', async () => {
    const c = await coordinator(3, { min: 2, max: 3 });
    const [r0, r1, r2] = c.joined as [MemoryWorker, MemoryWorker, MemoryWorker];
    r2.when({ on: 'step', step: 7 }, { do: 'fail' });
    const { elastic, result } = await c.train();
    expect(result.finalStep).toBe(totalSteps(c));
    expect(elastic.generation.generation).toBe(2);
    expect(elastic.generation.members.map((m) => m.session)).toEqual([r0, r1]);
    expect(c.events.events.map((e) => [e.kind, e.rank, e.step])).toEqual([
      ['failure', 2, 7],
      ['recovery', 0, 7],
    ]);
    // Both survivors aborted step 7 with 7 steps done: rank 0 is the source, rank 1 loads its
    // state after its welcome to generation 2 and before that generation's first step.
    expect(r0.log.some((e) => e.event === 'load-state')).toBe(false);
    const welcome = indexOf(r1, (e) => e.event === 'welcome' && e.generation === 2);
    const loaded = indexOf(r1, (e) => e.event === 'load-state' && e.step === 7);
    const firstOrder = indexOf(r1, (e) => e.event === 'order' && e.generation === 2);
    expect(welcome).toBeGreaterThanOrEqual(0);
    expect(loaded).toBeGreaterThan(welcome);
    expect(firstOrder).toBeGreaterThan(loaded);
    expect(orders(r1, 2)[0]?.step).toBe(7);
    // Generation 2 replans the same global batches over 2 ranks.
    for (const { step, order } of orders(r1, 2))
      expect([...order.indices]).toEqual([...shardFor(batchAt(c.job, c.dataset.train.count, step), 1, 2)]);
    expect(c.stepRecords().map((r) => r['step'])).toEqual(Array.from({ length: totalSteps(c) }, (_, s) => s));
    expectFinishedConsistently(c, [r0, r1]);
  });

  it('takes the most advanced state: that of a rank that finished the failed step', async () => {
    const c = await coordinator(3, { min: 2, max: 3 });
    const [r0, r1, r2] = c.joined as [MemoryWorker, MemoryWorker, MemoryWorker];
    // Rank 2 dies inside step 7's collective after rank 1 completed it; rank 0 is left aborted.
    r2.when({ on: 'step', step: 7 }, { do: 'fail-during', finishers: [1] });
    const { elastic, result } = await c.train();
    expect(result.finalStep).toBe(totalSteps(c));
    expect(elastic.generation.members.map((m) => m.session)).toEqual([r0, r1]);
    expect(c.events.events.find((e) => e.kind === 'recovery')).toMatchObject({ rank: 1, step: 8 });
    // Rank 0 loads the state after step 8 (rank 1's); rank 1 sends it and loads nothing.
    expect(r0.log.filter((e) => e.event === 'load-state')).toEqual([{ event: 'load-state', step: 8 }]);
    expect(r1.log.some((e) => e.event === 'load-state')).toBe(false);
    expect(orders(r0, 2)[0]?.step).toBe(8);
    // Step 7 is logged once, from the rank that finished it.
    const steps = c.stepRecords();
    expect(steps.map((r) => r['step'])).toEqual(Array.from({ length: totalSteps(c) }, (_, s) => s));
    expect(steps[7]).toMatchObject({ recoveredFrom: expect.any(String) as string });
    expectFinishedConsistently(c, [r0, r1]);
  });

  it('regroups when a rank fails during validation', async () => {
    const c = await coordinator(3, { min: 2, max: 3 }, loopJob({ validation: { everySteps: 4 } }));
    const [r0, r1, r2] = c.joined as [MemoryWorker, MemoryWorker, MemoryWorker];
    r1.when({ on: 'eval' }, { do: 'fail' });
    const { elastic, result } = await c.train();
    expect(result.finalStep).toBe(totalSteps(c));
    expect(elastic.generation.members.map((m) => m.session)).toEqual([r0, r2]);
    expect(c.events.events.map((e) => [e.kind, e.rank, e.step])).toEqual([
      ['failure', 1, 4],
      ['recovery', 0, 4],
    ]);
    expect(orders(r2, 2)[0]?.step).toBe(4);
    expectFinishedConsistently(c, [r0, r2]);
  });
});

describe('growth and replacement', () => {
  it('lets a worker that joins mid-run in at the next boundary, with the current state', async () => {
    const c = await coordinator(2, { min: 2, max: 3 });
    const [r0, r1] = c.joined as [MemoryWorker, MemoryWorker];
    r0.when({ on: 'step', step: 3 }, { do: 'hold' });
    const run = c.train();
    await until(() => r0.holding > 0);
    const joiner = c.join();
    r0.release();
    const { elastic, result } = await run;
    expect(result.finalStep).toBe(totalSteps(c));
    expect(elastic.generation.generation).toBe(2);
    expect(elastic.generation.members.map((m) => m.session)).toEqual([r0, r1, joiner]);
    const firstStep = orders(joiner, 2)[0]?.step ?? -1;
    expect(joiner.log.filter((e) => e.event === 'load-state')).toEqual([{ event: 'load-state', step: firstStep }]);
    expect(c.events.events.map((e) => [e.kind, e.rank, e.step])).toEqual([
      ['join', 2, firstStep],
      ['recovery', 0, firstStep],
    ]);
    expectFinishedConsistently(c, [r0, r1, joiner]);
  });

  it('admits a replacement for a failed rank (min < max)', async () => {
    const c = await coordinator(3, { min: 2, max: 3 });
    const [r0, r1, r2] = c.joined as [MemoryWorker, MemoryWorker, MemoryWorker];
    r2.when({ on: 'step', step: 2 }, { do: 'fail' });
    // Generation 2 (ranks 0 and 1) holds at step 3 until the replacement has joined.
    r0.when({ on: 'step', step: 3, generation: 2 }, { do: 'hold' });
    const run = c.train();
    await until(() => r0.holding > 0);
    const replacement = c.join();
    r0.release();
    const { elastic, result } = await run;
    expect(result.finalStep).toBe(totalSteps(c));
    expect(elastic.generation.members.map((m) => m.session)).toEqual([r0, r1, replacement]);
    expect(c.events.events.map((e) => e.kind)).toEqual(['failure', 'recovery', 'join', 'recovery']);
    expectFinishedConsistently(c, [r0, r1, replacement]);
  });
});

describe('fewer than workers.min', () => {
  it('waits for replacements until the deadline (on the test clock), then gives up with a checkpoint of the most advanced state', async () => {
    const job = loopJob({ timeouts: { replacementMs: 60_000 } });
    const c = await coordinator(3, { min: 3, max: 3 }, job);
    const [r0, , r2] = c.joined as [MemoryWorker, MemoryWorker, MemoryWorker];
    r2.when({ on: 'step', step: 7 }, { do: 'fail-during', finishers: [0] });
    const run = c.train();
    const failed = expect(run).rejects.toThrow(/below workers.min = 3.*state at step 8 was checkpointed/);
    // The regroup fetched rank 0's state (its first fetch was the epoch-end checkpoint at step 6)
    // and now waits for a replacement that never comes.
    await until(() => r0.log.filter((e) => e.event === 'fetch').length === 2);
    await until(() => c.clock.pendingTimers > 0);
    c.clock.advance(job.timeouts.replacementMs);
    await failed;
    await expect(run).rejects.toBeInstanceOf(WorkerFailedError);
    const checkpoints = await c.checkpoints.list();
    expect(checkpoints.map((i) => i.step)).toEqual([6, 8]);
    const { state } = await c.checkpoints.load(8);
    expect(JSON.parse(Buffer.from(state).toString('utf8'))).toEqual(expectedState(c.job, c.dataset.train.count, 8));
  });

  it('a stop signal while it waits for replacements checkpoints the state and ends as preempted, not as a failure', async () => {
    const job = loopJob({ timeouts: { replacementMs: 60_000 } });
    const c = await coordinator(3, { min: 3, max: 3 }, job);
    const [r0, , r2] = c.joined as [MemoryWorker, MemoryWorker, MemoryWorker];
    r2.when({ on: 'step', step: 7 }, { do: 'fail-during', finishers: [0] });
    const run = c.train();
    const stopped = expect(run).rejects.toBeInstanceOf(PreemptedError);
    await until(() => r0.log.filter((e) => e.event === 'fetch').length === 2);
    await until(() => c.clock.pendingTimers > 0);
    c.stop.abort(new StoppedBySignalError('SIGINT'));
    await stopped;
    await expect(run).rejects.toMatchObject({ step: 8, signal: 'SIGINT', exitCode: 130 });
    expect((await c.checkpoints.list()).map((i) => i.step)).toEqual([6, 8]);
  });
});

/** Waits for a state the run reaches by events; the bound (minutes) only catches a hang. */
async function until(condition: () => boolean): Promise<void> {
  for (let poll = 0; poll < 100_000; poll++) {
    if (condition()) return;
    await new Promise<void>((resolve) => setTimeout(resolve, 2));
  }
  throw new Error('condition not reached');
}

// Faults reported in issue 10 (§1, §2), reproduced in memory: both failed before the fix.
describe('faults from issue 10', () => {
  it('drops a rank that fails while the ring re-forms, and the others continue (issue 10 §2)', async () => {
    const c = await coordinator(3, { min: 1, max: 3 });
    const [r0, r1, r2] = c.joined as [MemoryWorker, MemoryWorker, MemoryWorker];
    r2.when({ on: 'step', step: 7 }, { do: 'fail' });
    r1.when({ on: 'load-state' }, { do: 'fail' });
    const { elastic, result } = await c.train();
    expect(result.finalStep).toBe(totalSteps(c));
    expect(elastic.generation.members.map((m) => m.session)).toEqual([r0]);
    expectFinishedConsistently(c, [r0]);
  });

  it('gives the seat of a failed rank to a replacement that joins within the grace (issue 10 §1)', async () => {
    const job = loopJob({ timeouts: { replacementMs: 60_000 } });
    const c = await coordinator(3, { min: 3, max: 3 }, job);
    const [r0, r1, r2] = c.joined as [MemoryWorker, MemoryWorker, MemoryWorker];
    r2.when({ on: 'step', step: 7 }, { do: 'fail' });
    const run = c.train();
    await until(() => r0.log.filter((e) => e.event === 'fetch').length === 2);
    const replacement = c.join();
    const rejected = (): boolean => replacement.log.some((e) => e.event === 'reject');
    await until(() => rejected() || replacement.log.some((e) => e.event === 'welcome'));
    if (rejected()) {
      // Let the run give up instead of waiting for a replacement that was turned away.
      c.clock.advance(job.timeouts.replacementMs);
      await run.catch(() => undefined);
    }
    expect(replacement.log.filter((e) => e.event === 'reject')).toEqual([]);
    const { elastic, result } = await run;
    expect(result.finalStep).toBe(totalSteps(c));
    expect(elastic.generation.members.map((m) => m.session)).toEqual([r0, r1, replacement]);
    expectFinishedConsistently(c, [r0, r1, replacement]);
  });
});
