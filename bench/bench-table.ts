// Fixed-width text tables for benchmark output: right-aligned columns under a '#'-prefixed
// header, so the output pastes into Markdown code blocks and greps like nccl-tests output.
// Widths are fixed per column, so rows can be printed one at a time as measurements finish.

export interface Column<Row> {
  title: string;
  /** Minimum width; a longer title or cell widens only its own line. */
  width: number;
  value(row: Row): string;
}

export function headerLine<Row>(columns: ReadonlyArray<Column<Row>>): string {
  return `# ${columns.map((column) => column.title.padStart(column.width)).join('  ')}`;
}

export function rowLine<Row>(columns: ReadonlyArray<Column<Row>>, row: Row): string {
  return `  ${columns.map((column) => column.value(row).padStart(column.width)).join('  ')}`;
}

export function formatTable<Row>(columns: ReadonlyArray<Column<Row>>, rows: readonly Row[]): string {
  return [headerLine(columns), ...rows.map((row) => rowLine(columns, row))].join('\n');
}

/** A number with `digits` decimals, or '-' when it is not finite. */
export function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : '-';
}

/** 0.1234 -> "12.3%". */
export function percent(value: number): string {
  return Number.isFinite(value) ? `${(value * 100).toFixed(1)}%` : '-';
}
