// Real tables from the vega-datasets devDependency, as CSV text for training jobs: penguins
// (classify Species from four body measurements) and cars (regress Miles_per_Gallon). Rows with a
// missing value are dropped, so every remaining cell is a number (or the class name).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';

const require = createRequire(import.meta.url);
/** The package exports only its index (build/index.js); the tables sit in data/ beside build/. */
const DATA_DIR = path.join(path.dirname(require.resolve('vega-datasets')), '..', 'data');

interface Table {
  header: string[];
  rows: Array<Array<string | number>>;
}

function vegaRows(name: string): Array<Record<string, unknown>> {
  return JSON.parse(readFileSync(path.join(DATA_DIR, name), 'utf8')) as Array<Record<string, unknown>>;
}

/** The columns `header` of every row that has a value in each. */
function complete(rows: Array<Record<string, unknown>>, header: string[]): Table {
  const kept = rows.filter((row) => header.every((c) => row[c] !== null && row[c] !== undefined && row[c] !== ''));
  return { header, rows: kept.map((row) => header.map((c) => row[c] as string | number)) };
}

export const PENGUIN_FEATURES = ['Beak Length (mm)', 'Beak Depth (mm)', 'Flipper Length (mm)', 'Body Mass (g)'];
export const CAR_FEATURES = ['Cylinders', 'Displacement', 'Horsepower', 'Weight_in_lbs', 'Acceleration'];

export function penguins(): Table {
  return complete(vegaRows('penguins.json'), [...PENGUIN_FEATURES, 'Species']);
}

export function cars(): Table {
  return complete(vegaRows('cars.json'), [...CAR_FEATURES, 'Miles_per_Gallon']);
}

/** CSV text of `table` (columns in `header` order, or the table's). */
export function toCsv(table: Table, header = table.header): string {
  const at = header.map((c) => table.header.indexOf(c));
  const quote = (cell: string): string => (/[",]/.test(cell) ? `"${cell.replace(/"/g, '""')}"` : cell);
  const lines = [
    header.map(quote).join(','),
    ...table.rows.map((row) => at.map((i) => quote(String(row[i]))).join(',')),
  ];
  return `${lines.join('\n')}\n`;
}
