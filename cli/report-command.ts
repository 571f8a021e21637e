// `ringtrain report RUN... [--out DIR]`: a static HTML page with SVG charts of runs (overlaid,
// with their job differences) and of `bench train/allreduce --json` results (report/).
import * as path from 'node:path';
import type { Command } from 'commander';
import { writeReport } from '../report/write-report.js';

export function addReportCommand(program: Command): void {
  program
    .command('report')
    .description(
      'write an HTML page with SVG charts: curves of runs (several overlaid) and bench train/allreduce --json results',
    )
    .argument('<inputs...>', 'run directories (runs/latest, ...) and bench --json files')
    .option('--out <dir>', 'where to write index.html and the charts (default <run>/report for one run, else report)')
    .action(async (inputs: string[], flags: { out?: string }) => {
      const { outDir, files } = await writeReport({ inputs, ...(flags.out !== undefined ? { out: flags.out } : {}) });
      process.stdout.write(`ringtrain: report ${path.join(outDir, 'index.html')} (${files.length - 1} charts)\n`);
    });
}
