// train() in this process (the built library, dist/lib), with real worker processes: an abort
// signal stops the run at the next step boundary with a checkpoint (PreemptedError), and the
// resumed run follows the learning rates a callback set before the stop; an abort before
// training began is a StoppedBySignalError.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import type * as Library from '../../lib/index.js';
import { REPO_ROOT, tempDir } from '../helpers/cli.js';

// The build, as a program that installed ringtrain gets it (its workers run dist/cli/main.js).
const lib = (await import(pathToFileURL(path.join(REPO_ROOT, 'dist/lib/index.js')).href)) as typeof Library;

const dir = tempDir('ringtrain-library-');

/** 64 XOR samples, 48 for training, batch 8: 6 steps an epoch; 4 epochs. No epoch-end checkpoints. */
const job: Library.JobInput = {
  name: 'library-train',
  seed: 5,
  data: { format: 'xor', samples: 64, split: { validation: 0.25, test: 0 } },
  model: {
    input: [2],
    layers: [
      { type: 'dense', units: 4, activation: 'tanh' },
      { type: 'dense', units: 1, activation: 'sigmoid' },
    ],
  },
  loss: 'binaryCrossentropy',
  optimizer: { type: 'sgd', learningRate: 0.2 },
  training: { epochs: 4, batchSize: 8 },
  checkpoint: { everySteps: 0, keep: 3, atEpochEnd: false },
  backend: 'cpu',
};

function stepRecords(runDir: string): Array<{ step: number; learningRate: number }> {
  return readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { type: string; step: number; learningRate: number })
    .filter((r) => r.type === 'step');
}

/** Live child processes of this process (Linux /proc): train() must leave none once it settles. */
function childPids(): number[] {
  const children: number[] = [];
  for (const name of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      // stat: "pid (comm) state ppid ..."; comm may hold spaces, so read after the last ')'.
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(ppid) === process.pid && state !== 'Z') children.push(Number(name));
    } catch {
      // exited while being read
    }
  }
  return children;
}

/** How many listeners the process has for the events a library must not leave handlers on. */
function processListeners(): Record<string, number> {
  const events = ['exit', 'SIGINT', 'SIGTERM', 'uncaughtException', 'unhandledRejection'] as const;
  return Object.fromEntries(events.map((e) => [e, process.listenerCount(e)]));
}

describe('train()', () => {
  it('an abort signal stops at the next step boundary with a checkpoint; the resumed run keeps the learning rates set before', async () => {
    const out = path.join(dir, 'aborted');
    const controller = new AbortController();
    const listenersBefore = processListeners();
    const error = await lib
      .train({
        job,
        workers: 2,
        out,
        progress: false,
        signal: controller.signal,
        callbacks: {
          onEpochEnd: (event) => {
            if (event.epoch === 0) event.setLearningRate(0.05);
            if (event.epoch === 1) controller.abort();
          },
        },
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(lib.PreemptedError);
    expect((error as Library.PreemptedError).step).toBe(12);
    expect((error as Error).message).toBe(
      `stopped by the abort signal after step 12; checkpointed, continue with: ringtrain train --resume ${out}`,
    );
    // The stop's own checkpoint (the job takes none at epoch ends), and nothing past it.
    expect(existsSync(path.join(out, 'checkpoints', 'step-000000012', 'manifest.json'))).toBe(true);
    // The summary says preempted, with no metrics or model of this attempt.
    const ended = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8')) as Record<string, unknown>;
    expect(ended).toMatchObject({ status: 'preempted', modelStep: null, lastCheckpointStep: 12 });
    expect(stepRecords(out).map((r) => r.step)).toEqual(Array.from({ length: 12 }, (_, s) => s));
    expect(childPids()).toEqual([]);

    // Resumed with no callbacks at all: the change made at the end of epoch 0 still holds.
    const summary = await lib.train({ resume: out, workers: 2, progress: false });
    expect(summary.steps).toBe(24);
    expect(summary.learningRateChanges).toEqual([{ fromStep: 6, learningRate: 0.05 }]);
    const records = stepRecords(out);
    expect(records.map((r) => r.step)).toEqual(Array.from({ length: 24 }, (_, s) => s));
    for (const r of records) expect(r.learningRate, `step ${r.step}`).toBe(r.step < 6 ? 0.2 : 0.05);
    expect(childPids()).toEqual([]);
    expect(processListeners()).toEqual(listenersBefore);
  });

  it('an abort before training began rejects with StoppedBySignalError and leaves no worker running', async () => {
    const controller = new AbortController();
    controller.abort();
    const error = await lib
      .train({ job, workers: 2, out: path.join(dir, 'never'), progress: false, signal: controller.signal })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(lib.StoppedBySignalError);
    expect((error as Error).message).toBe(
      'stopped by the abort signal before training started; nothing was trained, so nothing was checkpointed',
    );
    expect(childPids()).toEqual([]);
  });

  it('rejects a bad option with a FlagError naming it, before anything starts', async () => {
    await expect(lib.train({ job, workers: 0, out: path.join(dir, 'bad') })).rejects.toThrow(
      new lib.FlagError('workers', 'must be a positive integer, got 0'),
    );
    expect(existsSync(path.join(dir, 'bad'))).toBe(false);
  });
});
