// One rank's step over flat buffers (worldSize 1: the all-reduce is the identity): a step skipped
// for a non-finite gradient leaves parameters, optimizer state and BatchNorm statistics as the
// last completed step left them, and so does a step whose collective was aborted (a peer died),
// with or without syncBatchNorm. A step reports the gradient collective's wait for peers as
// part of its all-reduce time.
import { beforeAll, describe, expect, it } from 'vitest';
import { CollectiveError } from '../../shared/errors.js';
import type { StepOrder__Output } from '../../proto/generated/ringtrain/v1/StepOrder.js';
import { loadDataset } from '../../shared/data/dataset.js';
import { encodeIndices } from '../../shared/index-codec.js';
import { resolveJob } from '../../shared/job.js';
import { decodeTrainState } from '../../shared/train-state.js';
import { selectBackend } from '../../worker/backend/backend.js';
import { NO_WAIT, type CollectiveStats } from '../../worker/collectives/collective-stats.js';
import { buildModel } from '../../worker/replica/model-builder.js';
import { EVAL_BATCH_SIZE, Replica } from '../../worker/replica/replica.js';
import { TrainerReplica } from '../../worker/replica/trainer-replica.js';

const job = resolveJob(
  {
    seed: 3,
    data: { format: 'mnist', limit: 200 },
    model: {
      input: [784],
      layers: [
        { type: 'dense', units: 16 },
        { type: 'batchNormalization' },
        { type: 'activation', activation: 'relu' },
        { type: 'dense', units: 10, activation: 'softmax' },
      ],
    },
    loss: 'categoricalCrossentropy',
    optimizer: { type: 'adam', learningRate: 0.01 },
    training: { epochs: 1, batchSize: 16 },
  },
  'test job',
);

function order(step: number): StepOrder__Output {
  const indices = Uint32Array.from({ length: 16 }, (_, i) => (step * 16 + i) % 160);
  return {
    generation: 1,
    step,
    epoch: 0,
    batchInEpoch: step,
    sampleIndices: encodeIndices(indices),
    globalBatchSize: 16,
    learningRate: 0.01,
    wantParamHash: false,
  };
}

describe('TrainerReplica', () => {
  beforeAll(async () => {
    await selectBackend('cpu');
  });

  it('a skipped step restores the BatchNorm statistics its forward pass moved', async () => {
    process.env['RINGTRAIN_FAULT_NAN_STEPS'] = '2';
    const dataset = loadDataset(job);
    const replica = new Replica(buildModel(job), job);
    const trainer = new TrainerReplica(job, dataset, replica);
    delete process.env['RINGTRAIN_FAULT_NAN_STEPS'];
    const identity = (): Promise<CollectiveStats> => Promise.resolve(NO_WAIT);
    for (const step of [0, 1]) expect((await trainer.step(order(step), identity)).skipped).toBe(false);
    const before = decodeTrainState(trainer.exportState(), 'before');
    const report = await trainer.step(order(2), identity);
    expect(report.skipped).toBe(true);
    const after = decodeTrainState(trainer.exportState(), 'after');
    expect(after.nonTrainable.length).toBeGreaterThan(0);
    expect(Array.from(after.nonTrainable)).toEqual(Array.from(before.nonTrainable));
    expect(Array.from(after.params)).toEqual(Array.from(before.params));
    expect(after.optimizer.step).toBe(before.optimizer.step);
    // The next step trains again from there.
    expect((await trainer.step(order(3), identity)).skipped).toBe(false);
    expect(Array.from(decodeTrainState(trainer.exportState(), 'later').nonTrainable)).not.toEqual(
      Array.from(before.nonTrainable),
    );
  });

  it.each([
    ['averaged statistics', false],
    ['syncBatchNorm', true],
  ])('an aborted collective leaves the BatchNorm statistics as the last completed step (%s)', async (_, sync) => {
    const variant = resolveJob({ ...structuredClone(job), model: { ...job.model, syncBatchNorm: sync } }, 'test job');
    const dataset = loadDataset(variant);
    const replica = new Replica(buildModel(variant), variant);
    const trainer = new TrainerReplica(variant, dataset, replica);
    const identity = (): Promise<CollectiveStats> => Promise.resolve(NO_WAIT);
    for (const step of [0, 1]) expect((await trainer.step(order(step), identity)).skipped).toBe(false);
    const before = decodeTrainState(trainer.exportState(), 'before');
    const dying = (): Promise<CollectiveStats> => Promise.reject(new CollectiveError('left neighbour closed the ring'));
    await expect(trainer.step(order(2), dying)).rejects.toThrow(CollectiveError);
    const after = decodeTrainState(trainer.exportState(), 'after');
    expect(after.nonTrainable.length).toBeGreaterThan(0);
    expect(Array.from(after.nonTrainable)).toEqual(Array.from(before.nonTrainable));
    expect(Array.from(after.params)).toEqual(Array.from(before.params));
    expect(trainer.completedSteps).toBe(2);
  });

  it.each([
    ['averaged statistics', false],
    ['syncBatchNorm', true],
  ])("reports the gradient collective's wait, inside its all-reduce time (%s)", async (_, sync) => {
    const variant = resolveJob({ ...structuredClone(job), model: { ...job.model, syncBatchNorm: sync } }, 'test job');
    const trainer = new TrainerReplica(variant, loadDataset(variant), new Replica(buildModel(variant), variant));
    const calls: number[] = [];
    // Each collective reports a different wait; only the step's last one (the gradient) is timed as all-reduce.
    const slow = async (_buffer: Float32Array, _step: number, collective = 0): Promise<CollectiveStats> => {
      calls.push(collective);
      await new Promise((resolve) => setTimeout(resolve, 20));
      return { waitMs: collective + 1 };
    };
    const report = await trainer.step(order(0), slow);
    const gradient = calls.at(-1) ?? -1;
    expect(calls.length).toBe(sync ? gradient + 1 : 1);
    if (sync) expect(gradient).toBeGreaterThan(0);
    expect(report.timings?.allreduceWaitMs).toBe(gradient + 1);
    expect(report.timings?.allreduceMs).toBeGreaterThanOrEqual(report.timings?.allreduceWaitMs as number);
  });

  it('evaluates a split larger than one forward pass in chunks, with the sums of one whole pass', async () => {
    const big = resolveJob(
      { ...structuredClone(job), data: { format: 'mnist', limit: 800 }, metrics: ['accuracy'] },
      'test job',
    );
    const dataset = loadDataset(big);
    const replica = new Replica(buildModel(big), big);
    const trainer = new TrainerReplica(big, dataset, replica);
    await trainer.step(order(0), () => Promise.resolve(NO_WAIT));
    const count = EVAL_BATCH_SIZE + 200;
    const { featureSize: fs, labelSize: ls } = dataset;
    const whole = replica.evaluate(
      dataset.train.x.subarray(0, count * fs),
      dataset.train.y.subarray(0, count * ls),
      count,
      ['accuracy'],
    );
    const chunked = trainer.evaluate('train', encodeIndices(Uint32Array.from({ length: count }, (_, i) => i)));
    expect(chunked.count).toBe(count);
    expect(chunked.lossSum).toBe(whole.lossSum);
    expect(chunked.metricSums['accuracy']).toBe(whole.metricSums['accuracy']);
  });
});
