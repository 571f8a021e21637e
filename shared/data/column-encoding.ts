// How one CSV column becomes model input features, the same way at training and at predict time:
// the encodings travel with the dataset and are exported in the model's metadata
// (shared/model-metadata.ts), so `ringtrain predict` encodes raw rows, strings included, exactly
// as training did.
//
// Invariants:
// - A `number` column is 1 feature; `index` is 1 feature (the category's position in
//   `categories`); `onehot` is categories.length features, one of them 1.
// - `categories` is sorted (numerically when every category is a number), so every machine
//   builds the same vocabulary from the same file.
// - `fill` exists only under `missing: mean`: the training rows' mean (number) or most frequent
//   category (strings). Without it an empty cell is an error, at training and at predict time.
// - A category not in `categories` (seen only at predict time) is an error, never a silent zero.
import { DatasetError } from '../errors.js';

export type ColumnEncoding =
  | { column: string; kind: 'number'; fill?: number | undefined }
  | { column: string; kind: 'onehot' | 'index'; categories: string[]; fill?: string | undefined };

/** Where a cell sits, for errors. */
export interface CellPlace {
  file: string;
  line: number;
  /** Said after "column X is empty; " (training: how the job can allow it). */
  emptyHint?: string;
}

/** Features one column becomes. */
export function encodedWidth(encoding: ColumnEncoding): number {
  return encoding.kind === 'onehot' ? encoding.categories.length : 1;
}

/** Total features of a row: the model's input size. */
export function encodedSize(encodings: readonly ColumnEncoding[]): number {
  return encodings.reduce((sum, e) => sum + encodedWidth(e), 0);
}

/** Encodes `cell` into x[offset, offset + encodedWidth); the caller zeroes x. Throws DatasetError. */
export function encodeCell(
  encoding: ColumnEncoding,
  cell: string,
  x: Float32Array,
  offset: number,
  at: CellPlace,
): void {
  const given = cell === '' ? encoding.fill : cell;
  if (given === undefined)
    throw new DatasetError(
      at.file,
      `column "${encoding.column}" is empty${at.emptyHint === undefined ? '' : `; ${at.emptyHint}`}`,
      at.line,
    );
  if (encoding.kind === 'number') {
    x[offset] = typeof given === 'number' ? given : parseNumber(given, encoding.column, at.file, at.line);
    return;
  }
  const k = categoryIndex(encoding.categories, String(given));
  if (k < 0) {
    const known = encoding.categories.map((c) => `"${c}"`).join(', ');
    throw new DatasetError(
      at.file,
      `column "${encoding.column}": "${String(given)}" is not a category the model was trained on (${known})`,
      at.line,
    );
  }
  if (encoding.kind === 'onehot') x[offset + k] = 1;
  else x[offset] = k;
}

/** Position of `cell` in `categories`, matched as written, then as a number ("8.0" is "8"); -1 if absent. */
export function categoryIndex(categories: readonly string[], cell: string): number {
  const k = categories.indexOf(cell);
  if (k >= 0 || cell.trim() === '' || !Number.isFinite(Number(cell))) return k;
  return categories.indexOf(String(Number(cell)));
}

/** The distinct non-empty cells, keyed as numbers when all are numbers, sorted. */
export function vocabularyOf(cells: Iterable<string>): string[] {
  const distinct = [...new Set([...cells].filter((c) => c !== ''))];
  const numeric = distinct.length > 0 && distinct.every((c) => Number.isFinite(Number(c)));
  if (!numeric) return distinct.sort(compareCodeUnits);
  return [...new Set(distinct.map((c) => String(Number(c))))].sort((a, b) => Number(a) - Number(b));
}

/** Locale-independent ordering, so every machine builds the same vocabulary. */
export function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Spellings of NaN and infinity that Number() (or a human) reads as a non-finite number. */
export const NON_FINITE = /^[+-]?(nan|inf|infinity)$/i;

/**
 * A number finite in float32 (what training computes in), or a DatasetError naming the column.
 * A finite double such as 1e39 overflows to Infinity in a Float32Array and would poison every
 * gradient it touches, so it is refused here rather than discovered as skipped steps.
 */
export function parseNumber(cell: string, column: string, file: string, line: number): number {
  if (cell === '') throw new DatasetError(file, `column "${column}" is empty`, line);
  const value = Number(cell);
  if (Number.isFinite(Math.fround(value))) return value;
  if (Number.isFinite(value))
    throw new DatasetError(
      file,
      `column "${column}": ${cell} is outside the float32 range (±3.4e38) that training uses; rescale the column`,
      line,
    );
  if (NON_FINITE.test(cell)) throw new DatasetError(file, `column "${column}": ${cell} is not a finite number`, line);
  throw new DatasetError(file, `column "${column}": "${cell}" is not a number`, line);
}
