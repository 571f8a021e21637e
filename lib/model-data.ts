// Reads a data file for an exported model: a CSV (header row, the model's delimiter) or JSON lines
// (one object per line, keyed by column name). Columns are matched BY NAME against the columns
// the model was trained on, in any order; the label column is optional for predict and required
// for evaluate; columns the job left out (data.ignore, or not in data.features) may be present.
// String columns and empty cells are encoded as training encoded them (metadata.featureEncodings). A model trained without column names (mnist, idx, xor) takes every column but
// "label" in file order. Every problem is a DatasetError (exit 3) naming the file and, where known, line.
import { parseCsv } from '../shared/data/csv-parse.js';
import {
  encodeCell,
  encodedSize,
  encodedWidth,
  parseNumber,
  type ColumnEncoding,
} from '../shared/data/column-encoding.js';
import { readDataFile } from '../shared/data/read-data-file.js';
import { DatasetError } from '../shared/errors.js';
import type { ModelMetadata } from '../shared/model-metadata.js';

export interface ModelData {
  count: number;
  /** Raw features, row-major, in the model's input order. */
  x: Float32Array;
  /** Labels laid out as training laid them out (one-hot, class index or value); only with `labels: true`. */
  y?: Float32Array;
}

interface Table {
  header: string[];
  headerLine: number;
  rows: Array<{ line: number; cells: string[] }>;
}

export function readModelData(file: string, metadata: ModelMetadata, options: { labels: boolean }): ModelData {
  const table = /\.(jsonl|ndjson)$/i.test(file) ? readJsonLines(file) : readCsvTable(file, metadata.delimiter ?? ',');
  // An autoencoder's target is its input: it needs no label column.
  const needLabel = options.labels && metadata.task !== 'reconstruction';
  const label = metadata.labelColumn ?? (metadata.featureColumns === undefined ? UNNAMED_LABEL : undefined);
  const features = metadata.featureColumns ?? positionalFeatures(file, table, metadata, label ?? UNNAMED_LABEL);
  const index = new Map(table.header.map((name, i) => [name, i]));
  checkColumns(file, table, features, label, needLabel, metadata.ignoredColumns ?? []);
  const encodings = metadata.featureEncodings ?? features.map((column): ColumnEncoding => ({ column, kind: 'number' }));
  const width = encodedSize(encodings);
  const x = new Float32Array(table.rows.length * width);
  const featureAt = features.map((name) => index.get(name) as number);
  table.rows.forEach((row, r) => {
    let offset = r * width;
    encodings.forEach((encoding, f) => {
      encodeCell(encoding, row.cells[featureAt[f] as number] ?? '', x, offset, { file, line: row.line });
      offset += encodedWidth(encoding);
    });
  });
  const data: ModelData = { count: table.rows.length, x };
  if (needLabel && label !== undefined) {
    const labelAt = index.get(label) as number;
    data.y = encodeLabels(table, labelAt, label, metadata, file);
  }
  return data;
}

/** The label column of a file for a model trained without column names (mnist, idx, xor). */
const UNNAMED_LABEL = 'label';

/**
 * A model trained on data without column names takes every column but "label", in file order;
 * only their count can be checked.
 */
function positionalFeatures(file: string, table: Table, metadata: ModelMetadata, label: string): string[] {
  const features = table.header.filter((name) => name !== label);
  const featureSize = metadata.inputShape.reduce((a, b) => a * b, 1);
  if (features.length !== featureSize)
    throw new DatasetError(
      file,
      `has ${features.length} feature columns (every column but "${label}"), but the model takes ${featureSize} (input [${metadata.inputShape.join(', ')}]); it was trained without column names, so columns are read in file order`,
      table.headerLine,
    );
  return features;
}

/** One line naming what is missing and what is extra, against what the model was trained on. */
function checkColumns(
  file: string,
  table: Table,
  features: string[],
  label: string | undefined,
  needLabel: boolean,
  ignored: readonly string[],
): void {
  const have = new Set(table.header);
  const wanted = needLabel && label !== undefined ? [...features, label] : features;
  const missing = wanted.filter((name) => !have.has(name));
  const known = new Set([...features, ...ignored, ...(label === undefined ? [] : [label])]);
  const extra = table.header.filter((name) => !known.has(name));
  if (missing.length === 0 && extra.length === 0) return;
  const list = (names: string[]): string => names.map((n) => `"${n}"`).join(', ');
  const problems = [
    ...(missing.length > 0 ? [`missing ${list(missing)}`] : []),
    ...(extra.length > 0 ? [`extra ${list(extra)}`] : []),
  ];
  throw new DatasetError(
    file,
    `columns do not match the model's: ${problems.join('; ')} (it was trained on ${list(features)}${label === undefined ? '' : ` with label "${label}"`})`,
    table.headerLine,
  );
}

function readCsvTable(file: string, delimiter: string): Table {
  const rows = parseCsv(readDataFile(file).toString('utf8'), delimiter, file);
  const head = rows[0];
  if (head === undefined) throw new DatasetError(file, 'file is empty; expected a header row and data rows', 1);
  const body = rows.slice(1);
  if (body.length === 0) throw new DatasetError(file, 'the file has a header row but no data rows', head.line);
  const bad = body.find((row) => row.cells.length !== head.cells.length);
  if (bad !== undefined)
    throw new DatasetError(
      file,
      `expected ${head.cells.length} columns (as in the header), found ${bad.cells.length}`,
      bad.line,
    );
  return { header: head.cells, headerLine: head.line, rows: body };
}

/** JSON lines: the first object's keys are the header; every object must have the same keys. */
function readJsonLines(file: string): Table {
  const lines = readDataFile(file).toString('utf8').split(/\r?\n/);
  const rows: Table['rows'] = [];
  let header: string[] | undefined;
  lines.forEach((text, i) => {
    if (text.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new DatasetError(file, 'not a JSON object (JSON lines: one object per line)', i + 1);
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value))
      throw new DatasetError(file, 'not a JSON object (JSON lines: one object per line)', i + 1);
    const record = value as Record<string, unknown>;
    header ??= Object.keys(record);
    const keys = Object.keys(record);
    if (keys.length !== header.length || header.some((k) => !(k in record)))
      throw new DatasetError(file, `has keys ${keys.join(', ')}, the first object has ${header.join(', ')}`, i + 1);
    rows.push({ line: i + 1, cells: header.map((k) => jsonCell(record[k], k, file, i + 1)) });
  });
  if (header === undefined || rows.length === 0) throw new DatasetError(file, 'holds no JSON objects');
  return { header, headerLine: rows[0]?.line ?? 1, rows };
}

/** A JSON value as the CSV cell it stands for; null is an empty (missing) cell. */
function jsonCell(value: unknown, key: string, file: string, line: number): string {
  if (value === null) return '';
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return String(value);
  throw new DatasetError(file, `"${key}" holds a nested value; every column must be a number or a string`, line);
}

/** Labels as training laid them out for the loss (see shared/data/labels.ts). */
function encodeLabels(table: Table, column: number, name: string, metadata: ModelMetadata, file: string): Float32Array {
  const oneHot = metadata.labelEncoding === 'oneHot';
  const width = oneHot ? (metadata.numClasses ?? 0) : 1;
  const y = new Float32Array(table.rows.length * width);
  table.rows.forEach((row, r) => {
    const cell = row.cells[column] ?? '';
    if (metadata.task === 'regression') y[r] = parseNumber(cell, name, file, row.line);
    else {
      const k = classIndex(cell, metadata, name, file, row.line);
      if (oneHot) y[r * width + k] = 1;
      else y[r] = k;
    }
  });
  return y;
}

/** Training keyed numeric labels by value ("1.0" is class "1"); names are matched as written. */
function classIndex(cell: string, metadata: ModelMetadata, column: string, file: string, line: number): number {
  const names = metadata.classNames ?? Array.from({ length: metadata.numClasses ?? 0 }, (_, i) => String(i));
  let k = names.indexOf(cell);
  if (k < 0 && cell.trim() !== '' && Number.isFinite(Number(cell))) k = names.indexOf(String(Number(cell)));
  if (k < 0)
    throw new DatasetError(
      file,
      `column "${column}": "${cell}" is not one of the model's classes (${names.join(', ')})`,
      line,
    );
  return k;
}
