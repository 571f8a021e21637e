// The report's index.html: each chart as an <img> of its SVG file beside it, the runs' job
// differences as a table, and where each input came from. Static: no script, no network.
import type { Chart } from './report-charts.js';

export interface ReportSection {
  heading: string;
  /** Lines of text under the heading (input paths, notes). */
  notes: string[];
  /** A table (first row: headers), e.g. the job differences. */
  table?: string[][];
  charts: Chart[];
}

export function reportHtml(title: string, sections: readonly ReportSection[]): string {
  const body = sections.map(
    (section) => `<h2>${escape(section.heading)}</h2>
${section.notes.map((note) => `<p>${escape(note)}</p>`).join('\n')}
${section.table === undefined ? '' : tableHtml(section.table)}
${section.charts.map((c) => `<figure><img src="${encodeURIComponent(c.name)}.svg" alt="${escape(c.title)}"></figure>`).join('\n')}`,
  );
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escape(title)}</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 1em 2em; color: #222; }
  figure { display: inline-block; margin: 0 1em 1em 0; }
  table { border-collapse: collapse; } td, th { padding: 2px 8px; text-align: left; border-bottom: 1px solid #eee; }
</style>
</head>
<body>
<h1>${escape(title)}</h1>
${body.join('\n')}
</body>
</html>
`;
}

function tableHtml(rows: readonly string[][]): string {
  const [head, ...rest] = rows;
  const cells = (row: readonly string[], tag: string): string =>
    `<tr>${row.map((cell) => `<${tag}>${escape(cell)}</${tag}>`).join('')}</tr>`;
  return `<table>${head === undefined ? '' : cells(head, 'th')}${rest.map((r) => cells(r, 'td')).join('')}</table>`;
}

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
