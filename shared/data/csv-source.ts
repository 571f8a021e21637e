// Reads a CSV data set as it comes: a header row, one label column chosen by name, and feature
// columns chosen by `features`/`ignore`; numeric columns are read as numbers, string columns
// encoded (csv-columns.ts, column-encoding.ts), empty cells handled per `missing`.
// Classification labels may be strings or numbers; the sorted distinct values become the classes
// (numerically sorted when all are numbers). Every problem is a DatasetError naming the file and
// the 1-based line.
import { createHash } from 'node:crypto';
import { DatasetError } from '../errors.js';
import { readDataFile } from './read-data-file.js';
import type { DataSpec } from '../job-schema.js';
import { compareCodeUnits, encodeCell, encodedSize, encodedWidth, NON_FINITE, parseNumber } from './column-encoding.js';
import { encodeColumns, selectFeatures } from './csv-columns.js';
import { parseCsv, type CsvRow } from './csv-parse.js';
import type { RawSamples, RawTarget } from './raw-samples.js';
import { splitIndices } from './split.js';

export { parseNumber } from './column-encoding.js';

type CsvSpec = Extract<DataSpec, { format: 'csv' }>;

/**
 * The last file parsed, while something still holds its samples: resolving a job without
 * model.input parses the file (job.ts), and loadDataset then asks for it again at once. Keyed by
 * the spec, the seed and a hash of the bytes (not the mtime, whose clock ticks coarsely), so a
 * changed file is parsed afresh; hashing costs little next to parsing.
 */
let last: { key: string; raw: WeakRef<RawSamples> } | undefined;

/** `seed` is the job's: `missing: mean` fits its fill values on the training split only. */
export function readCsv(spec: CsvSpec, seed: number): RawSamples {
  const bytes = readDataFile(spec.path);
  const key = JSON.stringify([spec, seed, createHash('sha256').update(bytes).digest('hex')]);
  const cached = last !== undefined && last.key === key ? last.raw.deref() : undefined;
  if (cached !== undefined) return cached;
  const raw = parseCsvSamples(spec, seed, bytes.toString('utf8'));
  last = { key, raw: new WeakRef(raw) };
  return raw;
}

function parseCsvSamples(spec: CsvSpec, seed: number, text: string): RawSamples {
  const file = spec.path;
  const rows = parseCsv(text, spec.delimiter, file);
  const header = rows[0];
  if (header === undefined) throw new DatasetError(file, 'file is empty; expected a header row and data rows', 1);
  const labelColumn = findLabelColumn(header, spec.label, file);
  const chosen = selectFeatures(spec, header, labelColumn, file);
  const dataRows = keptRows(spec, rows.slice(1), header, chosen, file);
  const fillRows = spec.missing === 'mean' ? splitIndices(dataRows.length, spec.split, seed).train : undefined;
  const encodings = encodeColumns(spec, header, dataRows, chosen, fillRows, file);
  const featureSize = encodedSize(encodings);
  const x = new Float32Array(dataRows.length * featureSize);
  const emptyHint = 'fill the cell, or set data.missing: drop (the row) or mean in the job';
  dataRows.forEach((row, sample) => {
    let offset = sample * featureSize;
    encodings.forEach((encoding, f) => {
      encodeCell(encoding, row.cells[chosen[f] as number] as string, x, offset, { file, line: row.line, emptyHint });
      offset += encodedWidth(encoding);
    });
  });
  const labelCells = dataRows.map((row) => ({ cell: row.cells[labelColumn] as string, line: row.line }));
  const target =
    spec.task === 'regression'
      ? regressionTarget(labelCells, spec.label, file)
      : classTarget(labelCells, spec.label, file);
  const features = encodings.map((e) => e.column);
  const plain = encodings.every((e) => e.kind === 'number' && e.fill === undefined);
  const ignored = header.cells.filter((_, c) => c !== labelColumn && !chosen.includes(c));
  const columns = {
    features,
    label: spec.label,
    ...(plain ? {} : { encodings }),
    ...(ignored.length === 0 ? {} : { ignored }),
  };
  return { file, count: dataRows.length, featureSize, x, target, columns };
}

/** Data rows of the header's width; rows with an empty feature cell left out under `missing: drop`. */
function keptRows(spec: CsvSpec, rows: CsvRow[], header: CsvRow, chosen: number[], file: string): CsvRow[] {
  if (rows.length === 0) throw new DatasetError(file, 'the file has a header row but no data rows', header.line);
  for (const row of rows)
    if (row.cells.length !== header.cells.length)
      throw new DatasetError(
        file,
        `expected ${header.cells.length} columns (as in the header), found ${row.cells.length}`,
        row.line,
      );
  if (spec.missing !== 'drop') return rows;
  const kept = rows.filter((row) => chosen.every((c) => row.cells[c] !== ''));
  if (kept.length === 0)
    throw new DatasetError(file, 'every row has an empty feature cell, so missing: drop leaves no rows');
  return kept;
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
