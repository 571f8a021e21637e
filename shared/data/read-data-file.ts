// Reading a dataset file: a missing or unreadable file is a DatasetError naming it.
import { readFileSync } from 'node:fs';
import { DatasetError } from '../errors.js';

export function readDataFile(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    throw new DatasetError(
      file,
      code === 'ENOENT' ? 'file not found' : `cannot read file (${code ?? String(cause)})`,
      undefined,
      {
        cause,
      },
    );
  }
}
