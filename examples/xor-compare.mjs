// XOR, side by side: trains the 2-layer network (xor.yaml) and the single-layer perceptron
// (xor-perceptron.yaml) through the ringtrain CLI on 2 workers, then prints how many of the four
// corners each classifies correctly. The perceptron is trained with several seeds and its best
// run is shown: it never exceeds 3 of 4, because no line separates {(0,0), (1,1)} from
// {(0,1), (1,0)} (see examples/README.md). A brute-force search over lines shows the same bound.
//
//   npm run build && node examples/xor-compare.mjs [--epochs E]
//
// --epochs overrides the 300 of both jobs (the test suite trains fewer: 4 of 4 comes well before).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const cli = path.join(here, '..', 'dist', 'cli', 'main.js');
const PERCEPTRON_SEEDS = [1, 2, 3];
const epochsAt = process.argv.indexOf('--epochs');
const epochsArgs = epochsAt > 0 ? ['--epochs', process.argv[epochsAt + 1] ?? ''] : [];

/** Trains `job` and returns the corners it gets right (train binaryAccuracy × 4). */
function cornersRight(job, seed) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ringtrain-xor-'));
  const out = path.join(dir, 'run');
  const args = [cli, 'train', path.join(here, job), '--workers', '2', '--seed', String(seed), ...epochsArgs];
  try {
    const result = spawnSync(process.execPath, [...args, '--out', out], { encoding: 'utf8', timeout: 300_000 });
    if (result.status !== 0) throw new Error(`ringtrain ${args.slice(1).join(' ')} failed:\n${result.stderr}`);
    const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
    return Math.round(summary.train.binaryAccuracy * 4);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Best number of corners any line w1·a + w2·b + c > 0 classifies correctly, over a grid of lines. */
function bestLinearCorners() {
  const corners = [
    [0, 0, 0],
    [0, 1, 1],
    [1, 0, 1],
    [1, 1, 0],
  ];
  let best = 0;
  for (let w1 = -4; w1 <= 4; w1 += 0.25)
    for (let w2 = -4; w2 <= 4; w2 += 0.25)
      for (let c = -4; c <= 4; c += 0.125) {
        const right = corners.filter(([a, b, label]) => (w1 * a + w2 * b + c > 0 ? 1 : 0) === label).length;
        best = Math.max(best, right);
      }
  return best;
}

const mlp = cornersRight('xor.yaml', 1);
console.log(`2-layer network (xor.yaml):        ${mlp} of 4 corners`);
const perceptron = Math.max(...PERCEPTRON_SEEDS.map((seed) => cornersRight('xor-perceptron.yaml', seed)));
console.log(
  `perceptron (xor-perceptron.yaml):  ${perceptron} of 4 corners (best of seeds ${PERCEPTRON_SEEDS.join(', ')})`,
);
console.log(`any line, by brute force:          ${bestLinearCorners()} of 4 corners at most`);
