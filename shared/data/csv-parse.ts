// Splits CSV text into rows of string cells, keeping each row's 1-based line number for errors.
// Supports quoted fields ("a,b" and "say ""hi""") within one line; a quoted field may not span
// lines. Blank lines are skipped; CRLF and a UTF-8 BOM are accepted.
import { DatasetError } from '../errors.js';

export interface CsvRow {
  /** 1-based line number in the file. */
  line: number;
  cells: string[];
}

export function parseCsv(text: string, delimiter: string, file: string): CsvRow[] {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  const rows: CsvRow[] = [];
  lines.forEach((raw, i) => {
    if (raw.trim() === '') return;
    const cells = splitCsvLine(raw, delimiter);
    if (cells === undefined) throw new DatasetError(file, 'unterminated quoted field', i + 1);
    rows.push({ line: i + 1, cells });
  });
  return rows;
}

/** Cells of one line, unquoted and trimmed; undefined when a quote is left open. */
export function splitCsvLine(line: string, delimiter: string): string[] | undefined {
  const cells: string[] = [];
  let cell = '';
  let quoted = false;
  let inQuotes = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i] as string;
    if (inQuotes) {
      if (ch !== '"') cell += ch;
      else if (line[i + 1] === '"') {
        cell += '"';
        i++;
      } else inQuotes = false;
    } else if (ch === '"' && cell.trim() === '') {
      inQuotes = true;
      quoted = true;
      cell = '';
    } else if (ch === delimiter) {
      cells.push(quoted ? cell : cell.trim());
      cell = '';
      quoted = false;
    } else if (!quoted || ch.trim() !== '') {
      cell += ch;
    }
  }
  if (inQuotes) return undefined;
  cells.push(quoted ? cell : cell.trim());
  return cells;
}
