// ringtrain as another project uses it (issue 13 §5): `npm pack` of this repository's build,
// installed with npm into a fresh folder, imported from TypeScript compiled strictly, and run as
// that project's own program in a child process, which must exit by itself with code 0 (no
// worker, socket, timer or signal handler left behind by train()). Two programs: the README's
// "Use from code" example as written, and one whose callbacks stop at a chosen epoch and lower
// the learning rate, both checked in metrics.jsonl.
import { execFile } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, runNode, tempDir } from '../helpers/cli.js';

const exec = promisify(execFile);
/** Only catches a hang: installing from the npm cache takes a minute or two on a busy machine. */
const INSTALL_LIMIT_MS = 600_000;

const project = tempDir('ringtrain-package-');

/** The first ```ts block of the README's "Use from code" section. */
function readmeExample(readme: string): string {
  const section = readme.split(/^## Use from code$/m)[1]?.split(/^## /m)[0];
  const block = section === undefined ? undefined : /```ts\n([\s\S]*?)```/.exec(section)?.[1];
  if (block === undefined) throw new Error('README.md has no ```ts block under "## Use from code"');
  return block;
}

/** A program that trains through train() with two callbacks and prints its summary as JSON. */
const CALLBACK_PROGRAM = `
import { train, type RunSummary, type TrainingCallbacks, type TrainingEvent } from 'ringtrain';

const stopAtEpoch: TrainingCallbacks = {
  onEpochEnd: (event: TrainingEvent) => {
    if (event.epoch === 2) event.stop();
  },
};
const lowerRate: TrainingCallbacks = {
  onEpochEnd: (event: TrainingEvent) => {
    if (event.epoch === 0) event.setLearningRate(event.learningRate / 10);
  },
};
const summary: RunSummary = await train({
  job: {
    name: 'package-callbacks',
    seed: 3,
    data: { format: 'xor', samples: 64, split: { validation: 0.25, test: 0 } },
    model: { input: [2], layers: [{ type: 'dense', units: 4, activation: 'tanh' }, { type: 'dense', units: 1, activation: 'sigmoid' }] },
    loss: 'binaryCrossentropy',
    optimizer: { type: 'sgd', learningRate: 0.2 },
    training: { epochs: 6, batchSize: 8 },
    backend: 'cpu',
  },
  workers: 2,
  out: 'runs/callbacks',
  callbacks: [lowerRate, stopAtEpoch],
  progress: false,
});
console.log(JSON.stringify({ steps: summary.steps, status: summary.status, stoppedByCallback: summary.stoppedByCallback, runDir: summary.runDir }));
`;

beforeAll(async () => {
  // dist/ is the build the integration tests run (npm run test:integration builds it first).
  await exec('npm', ['pack', '--ignore-scripts', '--pack-destination', project], { cwd: REPO_ROOT });
  const tarball = readdirSync(project).find((f) => /^ringtrain-.*\.tgz$/.test(f));
  if (tarball === undefined) throw new Error(`npm pack left no tarball in ${project}`);
  writeFileSync(
    path.join(project, 'package.json'),
    JSON.stringify({ name: 'consumer', private: true, type: 'module' }),
  );
  await exec('npm', ['install', path.join(project, tarball), '--prefer-offline', '--no-audit', '--no-fund'], {
    cwd: project,
    timeout: INSTALL_LIMIT_MS,
  });
  writeFileSync(
    path.join(project, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        noUncheckedIndexedAccess: true,
        exactOptionalPropertyTypes: true,
        types: ['node'],
        skipLibCheck: true,
      },
      files: ['readme-example.ts', 'callbacks.ts'],
    }),
  );
  writeFileSync(
    path.join(project, 'readme-example.ts'),
    readmeExample(readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8')),
  );
  writeFileSync(path.join(project, 'callbacks.ts'), CALLBACK_PROGRAM);
  // TypeScript from this repository, against the declarations the package ships.
  await exec(process.execPath, [path.join(REPO_ROOT, 'node_modules/typescript/bin/tsc'), '-p', project], {
    cwd: project,
  }).catch((error: Error & { stdout?: string }) => {
    throw new Error(`tsc failed on the consumer project:\n${error.stdout ?? error.message}`);
  });
}, INSTALL_LIMIT_MS + 120_000);

describe('the packed package, installed in another project', () => {
  it("runs the README's example as written, and the program exits by itself with code 0", async () => {
    const result = await runNode(['readme-example.js'], { cwd: project });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^(completed|stopped-by-callback) after \d+ steps$/m);
    expect(result.stdout).toMatch(/^test accuracy [\d.]+; model in .+\/model$/m);
  });

  it('a callback stops at a chosen epoch and another lowers the learning rate: both show in metrics.jsonl', async () => {
    const result = await runNode(['callbacks.js'], { cwd: project });
    // Exits by itself: no worker, socket, timer or signal handler of train() keeps it alive.
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout.trim().split('\n').at(-1) ?? '') as {
      steps: number;
      status: string;
      stoppedByCallback: boolean;
      runDir: string;
    };
    // 48 training samples, batch 8: 6 steps an epoch; stopped at the end of epoch 2 (0-based).
    expect(summary).toMatchObject({ steps: 18, status: 'stopped-by-callback', stoppedByCallback: true });
    const steps = readFileSync(path.resolve(project, summary.runDir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { type: string; step: number; learningRate: number })
      .filter((r) => r.type === 'step');
    expect(steps.map((r) => r.step)).toEqual(Array.from({ length: 18 }, (_, s) => s));
    // Epoch 0 at the job's rate; from epoch 1's first step on, a tenth of it.
    for (const r of steps) expect(r.learningRate, `step ${r.step}`).toBeCloseTo(r.step < 6 ? 0.2 : 0.02, 12);
    const summaryFile = JSON.parse(readFileSync(path.resolve(project, summary.runDir, 'summary.json'), 'utf8')) as {
      learningRateChanges: unknown;
    };
    expect(summaryFile.learningRateChanges).toEqual([{ fromStep: 6, learningRate: 0.2 / 10 }]);
  });
});
