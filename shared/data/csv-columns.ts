// Which CSV columns are features, and how each is encoded (column-encoding.ts): the job's
// `features`/`ignore` select them, `encode` names string encodings, and the cells decide the rest
// (a column of numbers is numeric, a column of strings is one-hot). Pure over parsed rows.
import { DatasetError } from '../errors.js';
import type { DataSpec } from '../job-schema.js';
import { categoryIndex, NON_FINITE, vocabularyOf, type ColumnEncoding } from './column-encoding.js';
import type { CsvRow } from './csv-parse.js';

type CsvSpec = Extract<DataSpec, { format: 'csv' }>;

/** Header positions of the feature columns, in the model's input order. Throws DatasetError naming a bad name. */
export function selectFeatures(spec: CsvSpec, header: CsvRow, labelColumn: number, file: string): number[] {
  const names = header.cells;
  const list = (xs: readonly string[]): string => xs.map((c) => `"${c}"`).join(', ');
  const unknown = (key: string, name: string): DatasetError =>
    new DatasetError(
      file,
      `data.${key} names column "${name}", which is not in the header (${list(names)})`,
      header.line,
    );
  for (const name of spec.ignore) if (!names.includes(name)) throw unknown('ignore', name);
  for (const name of Object.keys(spec.encode)) if (!names.includes(name)) throw unknown('encode', name);
  for (const name of spec.features ?? []) {
    if (!names.includes(name)) throw unknown('features', name);
    if (name === spec.label)
      throw new DatasetError(file, `data.features names the label column "${name}"; leave it out`, header.line);
    if (spec.ignore.includes(name))
      throw new DatasetError(file, `column "${name}" is in both data.features and data.ignore`, header.line);
  }
  const chosen =
    spec.features?.map((name) => names.indexOf(name)) ??
    names.flatMap((name, i) => (i === labelColumn || spec.ignore.includes(name) ? [] : [i]));
  if (chosen.length === 0)
    throw new DatasetError(file, 'no feature columns are left besides the label (see data.ignore)', header.line);
  return chosen;
}

/**
 * The encoding of each chosen column, from all rows' cells; `fillRows` (the training rows) give
 * the `missing: mean` fill values. A column mixing numbers and strings is an error naming the odd cell.
 */
export function encodeColumns(
  spec: CsvSpec,
  header: CsvRow,
  rows: readonly CsvRow[],
  chosen: readonly number[],
  fillRows: Uint32Array | undefined,
  file: string,
): ColumnEncoding[] {
  return chosen.map((c) => {
    const column = header.cells[c] as string;
    const cells = rows.map((row) => row.cells[c] as string);
    const kind = spec.encode[column] ?? (isNumeric(cells, column, rows, file) ? 'number' : 'onehot');
    const fills = fillRows === undefined ? undefined : Array.from(fillRows, (r) => cells[r] as string);
    if (kind === 'number') {
      const encoding: ColumnEncoding = { column, kind };
      if (fills !== undefined) encoding.fill = meanOf(fills, column, file);
      return encoding;
    }
    const categories = vocabularyOf(cells);
    if (categories.length === 0) throw new DatasetError(file, `column "${column}" has no values`);
    const encoding: ColumnEncoding = { column, kind, categories };
    if (fills !== undefined) encoding.fill = modeOf(fills, categories, column, file);
    return encoding;
  });
}

/** All non-empty cells are numbers (true) or none are (false); a mix is an error. */
function isNumeric(cells: readonly string[], column: string, rows: readonly CsvRow[], file: string): boolean {
  const isNumber = (cell: string): boolean => Number.isFinite(Number(cell)) || NON_FINITE.test(cell);
  const present = cells.filter((c) => c !== '');
  const numbers = present.filter(isNumber).length;
  if (numbers === present.length) return true;
  if (numbers === 0) return false;
  const majorityNumeric = numbers * 2 >= present.length;
  const odd = cells.findIndex((c) => c !== '' && isNumber(c) !== majorityNumeric);
  const cell = cells[odd] ?? '';
  throw new DatasetError(
    file,
    majorityNumeric
      ? `column "${column}": "${cell}" is not a number, but most of the column is; fix the cell, or set data.encode.${column}: onehot (or index) to treat the column as categories`
      : `column "${column}" holds strings, but "${cell}" is a number; set data.encode.${column}: onehot (or index) to treat every cell as a category`,
    rows[odd]?.line,
  );
}

function meanOf(cells: readonly string[], column: string, file: string): number {
  const values = cells.filter((c) => c !== '').map(Number);
  if (values.length === 0)
    throw new DatasetError(file, `column "${column}" is empty in every training row, so missing: mean has no mean`);
  return Math.fround(values.reduce((a, b) => a + b, 0) / values.length);
}

/** The most frequent category (the first in vocabulary order on a tie). */
function modeOf(cells: readonly string[], categories: readonly string[], column: string, file: string): string {
  const counts = new Array<number>(categories.length).fill(0);
  for (const cell of cells) {
    const k = cell === '' ? -1 : categoryIndex(categories, cell);
    if (k >= 0) counts[k] = (counts[k] ?? 0) + 1;
  }
  let best = -1;
  counts.forEach((n, k) => {
    if (n > 0 && (best < 0 || n > (counts[best] ?? 0))) best = k;
  });
  if (best < 0)
    throw new DatasetError(file, `column "${column}" is empty in every training row, so missing: mean has no category`);
  return categories[best] as string;
}
