// `ringtrain report RUN... [--out DIR]`: reads every input (run directories, bench JSON), renders
// every chart, and only then writes DIR/<chart>.svg and, last, DIR/index.html, so a failure leaves
// no page pointing at missing charts.
import { mkdir } from 'node:fs/promises';
import * as path from 'node:path';
import { writeFileAtomic } from '../shared/atomic-file.js';
import { ReportInputError, rethrowStorageFull } from '../shared/errors.js';
import { allreduceBenchCharts, renderSvg, runCharts, trainBenchCharts, type Chart } from './report-charts.js';
import { readReportInput, type ReportInput, type RunInput } from './report-inputs.js';
import { jobDifferences } from './job-differences.js';
import { reportHtml, type ReportSection } from './report-page.js';

export interface ReportOptions {
  /** Run directories and `bench ... --json` files. */
  inputs: readonly string[];
  /** @default `<run>/report` for a single run, else `report` */
  out?: string;
}

export interface ReportResult {
  outDir: string;
  /** The files written, index.html last. */
  files: string[];
}

export async function writeReport(options: ReportOptions): Promise<ReportResult> {
  const inputs = options.inputs.map(readReportInput);
  const sections = reportSections(inputs);
  const charts = sections.flatMap((s) => s.charts);
  const svgs = await Promise.all(charts.map(renderSvg));
  const only = inputs[0];
  const outDir = path.resolve(
    options.out ?? (inputs.length === 1 && only?.kind === 'run' ? path.join(only.source, 'report') : 'report'),
  );
  const files: string[] = [];
  const write = async (name: string, text: string): Promise<void> => {
    const file = path.join(outDir, name);
    await writeFileAtomic(file, text).catch((error: unknown) => rethrowStorageFull(error, file));
    files.push(file);
  };
  await mkdir(outDir, { recursive: true }).catch((error: unknown) => {
    if (error instanceof Error && 'code' in error && error.code !== 'ENOSPC' && error.code !== 'EDQUOT')
      throw new ReportInputError(`--out ${outDir}`, `cannot create it: ${error.message}`, { cause: error });
    rethrowStorageFull(error, outDir);
  });
  for (const [i, chart] of charts.entries()) await write(`${chart.name}.svg`, svgs[i] ?? '');
  await write('index.html', reportHtml('ringtrain report', sections));
  return { outDir, files };
}

function reportSections(inputs: readonly ReportInput[]): ReportSection[] {
  const runs = inputs.filter((i): i is RunInput => i.kind === 'run');
  const sections: ReportSection[] = [];
  if (runs.length > 0) sections.push(runSection(runs));
  const used = new Set<string>();
  for (const input of inputs) {
    if (input.kind === 'run') continue;
    const label = uniqueLabel(path.basename(input.source).replace(/\.json$/i, ''), used);
    const charts: Chart[] =
      input.kind === 'bench-train' ? trainBenchCharts(label, input.rows) : allreduceBenchCharts(label, input.rows);
    sections.push({
      heading: input.kind === 'bench-train' ? `bench train: ${label}` : `bench allreduce: ${label}`,
      notes: [`from ${input.source}`],
      charts,
    });
  }
  return sections;
}

function runSection(given: readonly RunInput[]): ReportSection {
  const runs = uniqueRunLabels(given);
  const differences = jobDifferences(runs.map((r) => r.job));
  const notes = runs.map(
    (r) =>
      `${r.label}: ${r.source}, ${r.train.length} steps, last train loss ${r.train.at(-1)?.loss.toFixed(4) ?? '-'}`,
  );
  if (runs.length > 1 && differences.length === 0) notes.push('The runs have the same job.');
  return {
    heading: runs.length === 1 ? `Run ${runs[0]?.label ?? ''}` : `${runs.length} runs overlaid`,
    notes,
    ...(runs.length > 1 && differences.length > 0
      ? { table: [['job setting', ...runs.map((r) => r.label)], ...differences.map((d) => [d.path, ...d.values])] }
      : {}),
    charts: runCharts(runs),
  };
}

/** Two runs with the same base name (a/latest, b/latest) get distinct labels. */
function uniqueRunLabels(runs: readonly RunInput[]): RunInput[] {
  const used = new Set<string>();
  return runs.map((run) => ({ ...run, label: uniqueLabel(run.label, used) }));
}

function uniqueLabel(label: string, used: Set<string>): string {
  const safe = label.replace(/[^a-zA-Z0-9._-]/g, '_') || 'input';
  let unique = safe;
  for (let i = 2; used.has(unique); i++) unique = `${safe}-${i}`;
  used.add(unique);
  return unique;
}
