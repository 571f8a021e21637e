// Compares a trained forecaster with the naive last-value forecast on a windows CSV written by
// make-sequence-data.mjs (feature columns d1..dT, label `next`: month-to-month changes in ppm).
// The naive forecast says next month equals this month, a change of 0, so its MSE is mean(next²).
//
//   node examples/co2-lstm/evaluate.mjs <runDir> <windows.csv>
//
// Prints one line per figure and a last line "ratio R" (model MSE / naive MSE); exit code 1 on a
// missing or malformed input. Needs `npm run build` (it loads the model with dist's loader).
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../../dist/worker/backend/backend.js';
import { loadModelFromDir } from '../../dist/worker/replica/model-export.js';

/** { x: rows × T, y: T-th column } of a windows CSV. */
function readWindows(file) {
  const lines = readFileSync(file, 'utf8').trim().split('\n');
  const width = lines[0].split(',').length - 1;
  const rows = lines.slice(1).map((line) => line.split(',').map(Number));
  if (rows.length === 0 || rows.some((r) => r.length !== width + 1 || r.some((v) => !Number.isFinite(v))))
    throw new Error(`${file}: expected rows of ${width + 1} numbers under the header`);
  return { x: rows.map((r) => r.slice(0, width)), y: rows.map((r) => r[width]), width };
}

async function main([runDir, csv]) {
  if (runDir === undefined || csv === undefined) throw new Error('usage: evaluate.mjs <runDir> <windows.csv>');
  await selectBackend('auto');
  const model = await loadModelFromDir(path.join(runDir, 'model'));
  const { x, y, width } = readWindows(csv);
  const inputShape = model.inputs[0].shape.slice(1);
  const predicted = tf.tidy(() => model.predict(tf.tensor(x.flat(), [x.length, ...inputShape])).dataSync());
  if (inputShape.reduce((a, b) => a * b, 1) !== width)
    throw new Error(`${csv}: ${width} features, the model takes ${inputShape}`);
  const mse = y.reduce((a, v, i) => a + (v - predicted[i]) ** 2, 0) / y.length;
  const naive = y.reduce((a, v) => a + v * v, 0) / y.length;
  console.log(`windows ${y.length} (${path.basename(csv)})`);
  console.log(`model MSE ${mse.toFixed(4)} ppm²`);
  console.log(`naive MSE ${naive.toFixed(4)} ppm²`);
  console.log(`ratio ${(mse / naive).toFixed(4)}`);
}

main(process.argv.slice(2)).catch((error) => {
  console.error(`evaluate.mjs: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
