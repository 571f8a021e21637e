// Splits CSV text into rows of string cells with csv-parse (RFC 4180: a quoted field may hold the
// delimiter, doubled quotes and line breaks), keeping each row's 1-based starting line for
// errors. Blank lines are skipped; CRLF and a UTF-8 BOM are accepted; unquoted cells are trimmed,
// quoted ones kept as written; a quote inside an unquoted cell is a literal character.
import { CsvError, parse } from 'csv-parse/sync';
import { DatasetError } from '../errors.js';

export interface CsvRow {
  /** 1-based line number in the file where the row starts. */
  line: number;
  cells: string[];
}

interface ParsedRecord {
  record: string[];
  /** csv-parse's count of lines read when the record ended: its last line. */
  info: { lines: number };
}

export function parseCsv(text: string, delimiter: string, file: string): CsvRow[] {
  let records: ParsedRecord[];
  try {
    records = parse(text, {
      bom: true,
      delimiter,
      info: true,
      record_delimiter: ['\r\n', '\n'], // a file may mix them, as editors leave files
      relax_column_count: true, // a short or long row is reported by the caller, naming the counts
      relax_quotes: true,
      skip_empty_lines: true,
      trim: true,
    }) as unknown as ParsedRecord[];
  } catch (cause) {
    if (!(cause instanceof CsvError)) throw cause;
    throw new DatasetError(file, describeCsvError(cause), lineOf(cause), { cause });
  }
  // A record ends on line info.lines; only a quoted cell can hold a line break, so the record
  // starts as many lines earlier as its cells hold breaks.
  return records.map(({ record, info }) => ({
    line: info.lines - record.reduce((n, cell) => n + countBreaks(cell), 0),
    cells: record,
  }));
}

function countBreaks(text: string): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

function lineOf(error: CsvError): number | undefined {
  const lines = (error as CsvError & { lines?: unknown }).lines;
  return typeof lines === 'number' ? lines : undefined;
}

function describeCsvError(error: CsvError): string {
  if (error.code === 'CSV_QUOTE_NOT_CLOSED') return 'unterminated quoted field: a quote opened here is never closed';
  return `malformed CSV: ${error.message.replace(/ at line \d+/, '')}`;
}
