// Reading a dataset file: a missing or unreadable file is a DatasetError naming it.
import { readFileSync } from 'node:fs';
import { DatasetError, describeReadFailure } from '../errors.js';

export function readDataFile(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (cause) {
    throw new DatasetError(file, describeReadFailure(cause), undefined, { cause });
  }
}
