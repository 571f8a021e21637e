// Reads a CSV data set: a header row, one label column chosen by name, every other column a
// numeric feature. Classification labels may be strings or numbers; the sorted distinct values
// become the classes (numerically sorted when all are numbers). Every problem is a DatasetError
// naming the file and the 1-based line.
import { DatasetError } from '../errors.js';
import { readDataFile } from './read-data-file.js';
import type { DataSpec } from '../job-schema.js';
import { parseCsv, type CsvRow } from './csv-parse.js';
import type { RawSamples, RawTarget } from './raw-samples.js';

type CsvSpec = Extract<DataSpec, { format: 'csv' }>;

export function readCsv(spec: CsvSpec): RawSamples {
  const file = spec.path;
  const rows = parseCsv(readText(file), spec.delimiter, file);
  const header = rows[0];
  if (header === undefined) throw new DatasetError(file, 'file is empty; expected a header row and data rows', 1);
  const labelColumn = findLabelColumn(header, spec.label, file);
  const dataRows = rows.slice(1);
  if (dataRows.length === 0) throw new DatasetError(file, 'the file has a header row but no data rows', header.line);

  const columns = header.cells;
  const featureSize = columns.length - 1;
  const x = new Float32Array(dataRows.length * featureSize);
  const labelCells: Array<{ cell: string; line: number }> = [];
  dataRows.forEach((row, sample) => {
    if (row.cells.length !== columns.length) {
      throw new DatasetError(
        file,
        `expected ${columns.length} columns (as in the header), found ${row.cells.length}`,
        row.line,
      );
    }
    let feature = 0;
    row.cells.forEach((cell, column) => {
      if (column === labelColumn) labelCells.push({ cell, line: row.line });
      else x[sample * featureSize + feature++] = parseNumber(cell, columns[column] as string, file, row.line);
    });
  });
  const target =
    spec.task === 'regression'
      ? regressionTarget(labelCells, spec.label, file)
      : classTarget(labelCells, spec.label, file);
  const features = columns.filter((_, column) => column !== labelColumn);
  return { file, count: dataRows.length, featureSize, x, target, columns: { features, label: spec.label } };
}

function readText(file: string): string {
  return readDataFile(file).toString('utf8');
}

function findLabelColumn(header: CsvRow, label: string, file: string): number {
  const seen = new Set<string>();
  for (const name of header.cells) {
    if (name === '') throw new DatasetError(file, 'the header has an empty column name', header.line);
    if (seen.has(name)) throw new DatasetError(file, `the header names column "${name}" twice`, header.line);
    seen.add(name);
  }
  const index = header.cells.indexOf(label);
  if (index < 0) {
    const names = header.cells.map((c) => `"${c}"`).join(', ');
    throw new DatasetError(file, `label column "${label}" not found; the columns are ${names}`, header.line);
  }
  if (header.cells.length < 2)
    throw new DatasetError(file, 'there are no feature columns besides the label', header.line);
  return index;
}

/** Spellings of NaN and infinity that Number() (or a human) reads as a non-finite number. */
const NON_FINITE = /^[+-]?(nan|inf|infinity)$/i;

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

function regressionTarget(
  cells: ReadonlyArray<{ cell: string; line: number }>,
  column: string,
  file: string,
): RawTarget {
  const values = new Float32Array(cells.length);
  cells.forEach(({ cell, line }, i) => (values[i] = parseNumber(cell, column, file, line)));
  return { kind: 'values', values };
}

/** Distinct labels, sorted (numerically when all are numbers), become class indices. */
function classTarget(cells: ReadonlyArray<{ cell: string; line: number }>, column: string, file: string): RawTarget {
  // A missing label is not a class: "NaN" would otherwise become a class called NaN.
  const empty = cells.find(({ cell }) => cell === '');
  if (empty !== undefined) throw new DatasetError(file, `column "${column}" (the label) is empty`, empty.line);
  const nonFinite = cells.find(({ cell }) => NON_FINITE.test(cell));
  if (nonFinite !== undefined)
    throw new DatasetError(
      file,
      `column "${column}" (the label) is ${nonFinite.cell}, a missing or non-finite value, not a class`,
      nonFinite.line,
    );
  const numeric = cells.every(({ cell }) => Number.isFinite(Number(cell)));
  // Numeric labels are keyed by value, so "1" and "1.0" are one class.
  const keyOf = numeric ? (cell: string): string => String(Number(cell)) : (cell: string): string => cell;
  const classNames = [...new Set(cells.map(({ cell }) => keyOf(cell)))].sort(
    numeric ? (a, b) => Number(a) - Number(b) : compareCodeUnits,
  );
  if (classNames.length < 2)
    throw new DatasetError(
      file,
      `column "${column}" has only one class (${classNames[0] ?? ''}); classification needs at least two`,
    );
  const indexOf = new Map(classNames.map((name, i) => [name, i]));
  const classIndex = Uint32Array.from(cells, ({ cell }) => indexOf.get(keyOf(cell)) ?? 0);
  return { kind: 'classes', classIndex, numClasses: classNames.length, classNames };
}

/** Locale-independent ordering, so every machine builds the same class list. */
function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
