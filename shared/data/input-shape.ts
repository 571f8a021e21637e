// The per-sample input shape a data source determines, for a job that leaves model.input out.
// Cheap where the spec says it (mnist, xor, images, text); a CSV or IDX source is read, because
// only its contents say how many features it has (a string column's categories, an image size).
import type { DataSpec } from '../job-schema.js';
import { readCsv } from './csv-source.js';
import { readIdx } from './idx-source.js';
import { MNIST_PIXELS } from './mnist-source.js';
import { manifestInfo, readManifest } from './packed-manifest.js';
import { JobConfigError } from '../errors.js';

/** Shape of one sample of `data` (paths already resolved). Throws DatasetError when the data cannot be read. */
export function inferInputShape(data: DataSpec, seed: number): number[] {
  switch (data.format) {
    case 'mnist':
      return [MNIST_PIXELS];
    case 'xor':
      return [2];
    case 'images':
      return [...data.shape];
    case 'text':
      return [data.window];
    case 'csv':
      return [readCsv(data, seed).featureSize];
    case 'idx':
      return [readIdx({ ...data, limit: 1 }).featureSize];
    case 'packed':
      return [...manifestInfo(readManifest(data.path)).inputShape];
    case 'module':
      // A module is loaded asynchronously, by workers and the coordinator; a job must say its shape.
      throw new JobConfigError(data.path, [
        'model.input: required with data.format module (a data module tells its sample shape only once loaded)',
      ]);
  }
}
