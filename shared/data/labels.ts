// Label layout: how a source's targets are written into Split.y so they match the loss.
//   categoricalCrossentropy        one-hot of numClasses
//   sparseCategoricalCrossentropy  1 value: the class index as a float
//   binaryCrossentropy             1 value 0/1 (the source must have classes 0 and 1 only)
//   meanSquaredError               regression: the value; 2 classes: 0/1; more classes: one-hot
import { DatasetError, JobConfigError } from '../errors.js';
import type { Job, LossName } from '../job-schema.js';
import { lossName } from '../loss-spec.js';
import type { RawTarget } from './raw-samples.js';

export interface LabelLayout {
  task: 'classification' | 'binary' | 'regression';
  /** Floats per sample in Split.y. */
  labelSize: number;
  /** Classes of a classification or binary target. */
  numClasses?: number;
  /** Units the model's final layer must produce (numClasses for sparse labels, else labelSize). */
  outputUnits: number;
  oneHot: boolean;
}

export function labelLayout(target: RawTarget, loss: LossName, file: string): LabelLayout {
  if (target.kind === 'values') {
    if (loss !== 'meanSquaredError')
      throw new DatasetError(file, `a regression target needs loss meanSquaredError, not ${loss}`);
    return { task: 'regression', labelSize: 1, outputUnits: 1, oneHot: false };
  }
  const { numClasses } = target;
  switch (loss) {
    case 'categoricalCrossentropy':
      return { task: 'classification', labelSize: numClasses, numClasses, outputUnits: numClasses, oneHot: true };
    case 'sparseCategoricalCrossentropy':
      return { task: 'classification', labelSize: 1, numClasses, outputUnits: numClasses, oneHot: false };
    case 'binaryCrossentropy':
      if (target.classIndex.some((c) => c > 1)) {
        throw new DatasetError(
          file,
          `binaryCrossentropy needs labels 0 and 1 only, but there are ${numClasses} classes; use categoricalCrossentropy`,
        );
      }
      return { task: 'binary', labelSize: 1, numClasses: 2, outputUnits: 1, oneHot: false };
    case 'meanSquaredError':
      if (numClasses === 2) return { task: 'binary', labelSize: 1, numClasses: 2, outputUnits: 1, oneHot: false };
      return { task: 'classification', labelSize: numClasses, numClasses, outputUnits: numClasses, oneHot: true };
  }
}

/** Split.y for the samples `indices`, laid out per `layout`. */
export function encodeLabels(target: RawTarget, layout: LabelLayout, indices: Uint32Array): Float32Array {
  const y = new Float32Array(indices.length * layout.labelSize);
  indices.forEach((sample, i) => {
    if (target.kind === 'values') y[i] = target.values[sample] as number;
    else if (layout.oneHot) y[i * layout.labelSize + (target.classIndex[sample] as number)] = 1;
    else y[i] = target.classIndex[sample] as number;
  });
  return y;
}

/**
 * The model's output (per sample, from the coordinator's probe: coordinator/model-probe.ts) must
 * hold the labels' units, whatever the model's source; catching that before any worker starts
 * gives one clear line naming both shapes instead of a shape error mid-step.
 */
export function checkModelOutput(
  job: Job,
  expected: { task: string; outputUnits: number; numClasses?: number | undefined },
  modelOutput: readonly (number | null)[],
  source: string,
): void {
  const units = modelOutput.slice(1).reduce<number>((a, d) => a * (d ?? 1), 1);
  if (units === expected.outputUnits) return;
  const what =
    expected.task === 'regression'
      ? 'one regression value'
      : expected.task === 'binary'
        ? 'one 0/1 value'
        : expected.task === 'reconstruction'
          ? `the ${expected.outputUnits} input features`
          : `${expected.numClasses ?? 0} classes`;
  throw new JobConfigError(source, [
    `model: the labels (${what}, loss ${lossName(job.loss)}) need a model output of shape [null, ${expected.outputUnits}], but the model outputs [${modelOutput.map((d) => (d === null ? 'null' : String(d))).join(', ')}]; make the last layer produce ${expected.outputUnits} units`,
  ]);
}
