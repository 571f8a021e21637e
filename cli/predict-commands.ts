// `ringtrain predict` and `ringtrain evaluate`: use an exported model (a run folder or its model/)
// on a new data file. The model takes raw features (its standardisation is built in), so the file
// is read as is; its columns are matched by name against the ones the model was trained on.
// Exit codes: 2 bad flag, 3 data problem (missing/extra columns, unknown class), 10 no usable model.
import { type Command, Option } from 'commander';
import { readModelData } from '../lib/model-data.js';
import { loadModel } from '../lib/model-io.js';
import { describePredictions, evaluateModel, predictOutputs, type Prediction } from '../lib/model-predict.js';
import { writeFileAtomic } from '../shared/atomic-file.js';
import { selectBackend } from '../worker/backend/backend.js';

type OutputFormat = 'csv' | 'jsonl';

interface PredictFlags {
  data: string;
  out?: string;
  format?: OutputFormat;
}

export function addPredictCommands(program: Command): void {
  program
    .command('predict')
    .description(
      'predict a data file (CSV or JSON lines) with a trained model; class names and probabilities for classifiers',
    )
    .argument('<model>', 'a run folder (runs/<name>, runs/latest) or a model folder holding model.json')
    .requiredOption('--data <file>', 'rows to predict: CSV with a header, or .jsonl objects keyed by column name')
    .option('--out <file>', 'write predictions here (atomically) instead of stdout')
    .addOption(
      new Option('--format <format>', 'output format (default: jsonl for a .jsonl --out, else csv)').choices([
        'csv',
        'jsonl',
      ]),
    )
    .action(async (model: string, flags: PredictFlags) => {
      await selectBackend('cpu');
      const loaded = await loadModel(model);
      try {
        const data = readModelData(flags.data, loaded.metadata, { labels: false });
        const { outputs, units } = predictOutputs(loaded, data);
        const rows = describePredictions(loaded.metadata, outputs, units);
        const format = flags.format ?? (flags.out?.match(/\.(jsonl|ndjson)$/i) ? 'jsonl' : 'csv');
        const text = format === 'jsonl' ? toJsonLines(rows) : toCsv(rows);
        if (flags.out === undefined) process.stdout.write(text);
        else await writeFileAtomic(flags.out, text);
      } finally {
        loaded.model.dispose();
      }
    });
  program
    .command('evaluate')
    .description("the job's loss and metrics on a labelled data file, as summary.json reports the test split")
    .argument('<model>', 'a run folder (runs/<name>, runs/latest) or a model folder holding model.json')
    .requiredOption('--data <file>', 'labelled rows: CSV with a header, or .jsonl objects keyed by column name')
    .action(async (model: string, flags: { data: string }) => {
      await selectBackend('cpu');
      const loaded = await loadModel(model);
      try {
        const data = readModelData(flags.data, loaded.metadata, { labels: true });
        const metrics = evaluateModel(loaded, data);
        process.stdout.write(`${JSON.stringify({ count: data.count, ...metrics })}\n`);
      } finally {
        loaded.model.dispose();
      }
    });
}

function toJsonLines(rows: Prediction[]): string {
  return rows.map((row) => `${JSON.stringify(row)}\n`).join('');
}

/** class + p(<name>) per class, or value (value_<i> for several outputs). */
function toCsv(rows: Prediction[]): string {
  const first = rows[0];
  if (first === undefined) return '';
  const classes = Object.keys(first.probabilities ?? {});
  const width = Array.isArray(first.value) ? first.value.length : 1;
  const header =
    first.class !== undefined
      ? ['class', ...classes.map((c) => `p(${c})`)]
      : width === 1 && !Array.isArray(first.value)
        ? ['value']
        : Array.from({ length: width }, (_, i) => `value_${i}`);
  const lines = rows.map((row) =>
    row.class !== undefined
      ? [row.class, ...classes.map((c) => String(row.probabilities?.[c] ?? ''))]
      : [row.value ?? []].flat().map(String),
  );
  return [header, ...lines].map((cells) => `${cells.map(csvCell).join(',')}\n`).join('');
}

/** Quotes a cell that holds a comma, quote or newline (RFC 4180). */
function csvCell(cell: string): string {
  return /[",\n\r]/.test(cell) ? `"${cell.replace(/"/g, '""')}"` : cell;
}
