// The training baseline: plain single-process TensorFlow.js, `model.fit` on the same model
// (buildModel), data (loadDataset), loss, optimizer and backend as the job, no ringtrain in the
// way. Throughput is timed from the first measured batch's start to the last one's end. On wasm
// the baseline runs stock TensorFlow.js kernels plus only those a correct gradient needs
// (wasm-kernels.ts); with `speedups` it also gets ringtrain's faster matmul wrappers, which shows
// how much of ringtrain's lead is the kernels and how much the step.
// Not modelled here: weightDecay and clipNorm (tf.train optimizers have no such options).
import * as tf from '@tensorflow/tfjs';
import { loadDataset } from '../shared/data/dataset.js';
import type { Job, OptimizerSpec } from '../shared/job-schema.js';
import { lossName } from '../shared/loss-spec.js';
import { selectBackend } from '../worker/backend/backend.js';
import { buildModel } from '../worker/replica/model-builder.js';

export interface FitBaseline {
  samplesPerSecond: number;
  steps: number;
  meanStepMs: number;
  finalLoss: number;
  backend: string;
}

export async function measureModelFit(
  job: Job,
  steps: number,
  warmupSteps: number,
  speedups = false,
): Promise<FitBaseline> {
  const backend = await selectBackend(job.backend, undefined, { speedups });
  const dataset = loadDataset(job);
  const batch = job.training.batchSize;
  const count = Math.floor(dataset.train.count / batch) * batch;
  if (count === 0)
    throw new RangeError(`the training split has ${dataset.train.count} samples, fewer than one batch of ${batch}`);
  const total = warmupSteps + steps;
  const model = buildModel(job);
  model.compile({ optimizer: tfOptimizer(job.optimizer), loss: lossName(job.loss) });
  const x = tf.tensor(dataset.train.x.subarray(0, count * dataset.featureSize), [count, ...dataset.inputShape]);
  const y = tf.tensor2d(dataset.train.y.subarray(0, count * dataset.labelSize), [count, dataset.labelSize]);
  const begins: number[] = [];
  const ends: number[] = [];
  let finalLoss = Number.NaN;
  try {
    await model.fit(x, y, {
      batchSize: batch,
      epochs: Math.ceil((total * batch) / count),
      shuffle: false,
      verbose: 0,
      callbacks: {
        onBatchBegin: () => void begins.push(performance.now()),
        onBatchEnd: (_batch, logs) => {
          ends.push(performance.now());
          finalLoss = Number(logs?.['loss']);
          if (ends.length >= total) model.stopTraining = true;
        },
      },
    });
  } finally {
    tf.dispose([x, y]);
    model.dispose();
  }
  const seconds = ((ends[total - 1] ?? Number.NaN) - (begins[warmupSteps] ?? Number.NaN)) / 1000;
  return {
    samplesPerSecond: (steps * batch) / seconds,
    steps,
    meanStepMs: (seconds * 1000) / steps,
    finalLoss,
    backend: backend.name,
  };
}

/** The tf.train optimizer matching the job's (learning rate, momentum, Adam moments). */
function tfOptimizer(spec: OptimizerSpec): tf.Optimizer {
  switch (spec.type) {
    case 'sgd':
      return spec.momentum > 0
        ? tf.train.momentum(spec.learningRate, spec.momentum, spec.nesterov)
        : tf.train.sgd(spec.learningRate);
    case 'momentum':
      return tf.train.momentum(spec.learningRate, spec.momentum, spec.nesterov);
    case 'nesterov':
      return tf.train.momentum(spec.learningRate, spec.momentum, true);
    case 'adam':
      return tf.train.adam(spec.learningRate, spec.beta1, spec.beta2, spec.epsilon);
  }
}
