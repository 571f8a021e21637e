// Evaluates a trained Moby Dick Transformer on the held-out chapters and samples text from it.
//
//   node examples/moby-transformer/sample.mjs <runDir> [dataDir] [--windows N] [--chars N] [--seed S] [--temperature T]
//     dataDir: where make-sequence-data.mjs wrote moby-heldout.csv and moby-vocab.json
//     (default examples/data); N windows of the held-out CSV are scored (default 4000).
//
// Prints the held-out cross-entropy (nats per character) and perplexity of the model next to the
// unigram and bigram baselines of moby-vocab.json, then "sample:" and the generated text: the
// prompt is the first window of the held-out text, each next character is drawn from the model's
// distribution (sharpened by 1/temperature) with a seeded generator, so a run repeats exactly.
// Needs `npm run build` (it loads the model with dist's loader).
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../../dist/worker/backend/backend.js';
import { loadModelFromDir } from '../../dist/worker/replica/model-export.js';
import { registerLayers } from './model.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));

function option(argv, name, fallback) {
  const at = argv.indexOf(name);
  if (at < 0) return fallback;
  const value = Number(argv[at + 1]);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, got ${argv[at + 1]}`);
  return value;
}

/** mulberry32: uniform in [0, 1) from a seed. */
function uniformFrom(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function readRows(file, limit) {
  const lines = readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .slice(1, 1 + limit);
  return lines.map((line) => line.split(',').map(Number));
}

/** Mean cross-entropy (nats) of the model on rows [ids..., next], 256 windows per forward pass. */
function heldoutLoss(model, rows) {
  let total = 0;
  for (let start = 0; start < rows.length; start += 256) {
    const batch = rows.slice(start, start + 256);
    const width = batch[0].length - 1;
    const probs = tf.tidy(() => model.predict(tf.tensor2d(batch.map((r) => r.slice(0, width)))).arraySync());
    batch.forEach((r, i) => (total -= Math.log(Math.max(probs[i][r[width]], 1e-12))));
  }
  return total / rows.length;
}

function generate(model, prompt, count, uniform, temperature) {
  const context = [...prompt];
  const ids = [];
  for (let i = 0; i < count; i++) {
    const probs = tf.tidy(() => model.predict(tf.tensor2d([context])).dataSync());
    const weights = Array.from(probs, (p) => Math.pow(p, 1 / temperature));
    let draw = uniform() * weights.reduce((a, b) => a + b, 0);
    let next = 0;
    while (next < weights.length - 1 && (draw -= weights[next]) > 0) next++;
    context.shift();
    context.push(next);
    ids.push(next);
  }
  return ids;
}

async function main(argv) {
  const positional = argv.filter((a, i) => !a.startsWith('--') && !argv[i - 1]?.startsWith('--'));
  const [runDir, dataDir = path.join(HERE, '..', 'data')] = positional;
  if (runDir === undefined)
    throw new Error('usage: sample.mjs <runDir> [dataDir] [--windows N] [--chars N] [--seed S]');
  await selectBackend('auto');
  registerLayers(tf);
  const model = await loadModelFromDir(path.join(runDir, 'model'));
  const { vocab, baselines } = JSON.parse(readFileSync(path.join(dataDir, 'moby-vocab.json'), 'utf8'));
  const rows = readRows(path.join(dataDir, 'moby-heldout.csv'), option(argv, '--windows', 4000));
  const loss = heldoutLoss(model, rows);
  const line = (name, nats) =>
    console.log(`${name} ${nats.toFixed(3)} nats/char, perplexity ${Math.exp(nats).toFixed(2)}`);
  console.log(`held-out windows ${rows.length}`);
  line('model  ', loss);
  line('unigram', baselines.unigram);
  line('bigram ', baselines.bigram);
  const prompt = rows[0].slice(0, -1);
  const ids = generate(
    model,
    prompt,
    option(argv, '--chars', 200),
    uniformFrom(option(argv, '--seed', 1)),
    option(argv, '--temperature', 0.8),
  );
  const decode = (list) => list.map((id) => vocab[id]).join('');
  console.log(`prompt: ${decode(prompt)}`);
  console.log(`sample: ${decode(ids)}`);
}

main(process.argv.slice(2)).catch((error) => {
  console.error(`sample.mjs: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
