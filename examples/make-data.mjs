// Writes the CSV data sets of the examples, seeded so every run writes the same bytes:
//   regression.csv  y = 4 + 3·x1 − 2·x2 + 0.5·x3 + 0·x4 + noise,  x ~ N(0, 1), noise ~ N(0, 0.5²)
//   moons.csv       two interleaved half-moons (label 0 / 1) with gaussian noise of std 0.15
//
//   node examples/make-data.mjs [outDir] [--rows N]     (default outDir: examples/data, N: 2000)
//
// Plain Node (no build step, no dependencies).
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REGRESSION = { intercept: 4, coefficients: [3, -2, 0.5, 0], noiseStd: 0.5 };
const MOONS_NOISE_STD = 0.15;

/** mulberry32: a small seeded PRNG with uniform output in [0, 1). */
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

/** Standard normal draws (Box–Muller) from a uniform source. */
function normalFrom(uniform) {
  return () => {
    const u = 1 - uniform(); // (0, 1]: log(u) is finite
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * uniform());
  };
}

const fmt = (v) => v.toFixed(5);

/** Rows of the regression set; returns the CSV text and the label variance. */
export function regressionCsv(rows, seed = 1) {
  const normal = normalFrom(uniformFrom(seed));
  const { intercept, coefficients, noiseStd } = REGRESSION;
  const lines = [[...coefficients.map((_, i) => `x${i + 1}`), 'y'].join(',')];
  const labels = [];
  for (let r = 0; r < rows; r++) {
    const x = coefficients.map(() => normal());
    const y = intercept + x.reduce((sum, xi, i) => sum + xi * coefficients[i], 0) + noiseStd * normal();
    labels.push(y);
    lines.push([...x, y].map(fmt).join(','));
  }
  return { text: `${lines.join('\n')}\n`, labelVariance: variance(labels) };
}

/** Two half-moons: class 0 on the upper arc, class 1 on the lower arc shifted right and down. */
export function moonsCsv(rows, seed = 2) {
  const uniform = uniformFrom(seed);
  const normal = normalFrom(uniform);
  const lines = ['x1,x2,label'];
  for (let r = 0; r < rows; r++) {
    const label = r % 2;
    const angle = Math.PI * uniform();
    const x1 = label === 0 ? Math.cos(angle) : 1 - Math.cos(angle);
    const x2 = label === 0 ? Math.sin(angle) : 0.5 - Math.sin(angle);
    lines.push(`${fmt(x1 + MOONS_NOISE_STD * normal())},${fmt(x2 + MOONS_NOISE_STD * normal())},${label}`);
  }
  return `${lines.join('\n')}\n`;
}

function variance(values) {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return values.reduce((a, v) => a + (v - mean) ** 2, 0) / values.length;
}

function main(argv) {
  const rowsAt = argv.indexOf('--rows');
  const rows = rowsAt >= 0 ? Number(argv[rowsAt + 1]) : 2000;
  if (!Number.isInteger(rows) || rows < 10) throw new Error(`--rows must be an integer >= 10, got ${argv[rowsAt + 1]}`);
  const positional = argv.filter((a, i) => !a.startsWith('--') && argv[i - 1] !== '--rows');
  const outDir = positional[0] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), 'data');
  mkdirSync(outDir, { recursive: true });
  const regression = regressionCsv(rows);
  writeFileSync(path.join(outDir, 'regression.csv'), regression.text);
  writeFileSync(path.join(outDir, 'moons.csv'), moonsCsv(rows));
  const { intercept, coefficients, noiseStd } = REGRESSION;
  const bestR2 = 1 - noiseStd ** 2 / regression.labelVariance;
  console.log(
    `wrote ${rows} rows each to ${path.join(outDir, 'regression.csv')} and ${path.join(outDir, 'moons.csv')}`,
  );
  console.log(
    `regression: y = ${intercept} + ${coefficients.map((c, i) => `${c}·x${i + 1}`).join(' + ')} + N(0, ${noiseStd}²)`,
  );
  console.log(
    `regression: label variance ${regression.labelVariance.toFixed(3)}; R² = 1 − mse / variance; the noise alone allows R² ≈ ${bestR2.toFixed(3)}`,
  );
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url))
  main(process.argv.slice(2));
