// A coordinator restarted with the very same command line, as a Kubernetes Job restarts its pod:
// `ringtrain coordinator --out DIR --resume-if-exists` continues the run in DIR by itself, from
// the newest verified checkpoint or from the in-memory state of workers that outlived it, and ends
// with the parameters of an undisturbed run.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readMetrics } from '../../coordinator/run/run-directory.js';
import { CLI, runCli, smallMnistJob, tempDir, writeJob } from '../helpers/cli.js';

const dir = tempDir('ringtrain-resume-if-exists-');
// 1000 digits -> 800 train samples, batch 40 -> 20 steps an epoch; 2 epochs = 40 steps.
const TOTAL_STEPS = 40;
const job = writeJob(
  dir,
  smallMnistJob({
    data: { format: 'mnist', limit: 1000 },
    training: { epochs: 2, batchSize: 40 },
    checkpoint: { everySteps: 8, keep: 2, atEpochEnd: false },
  }),
);
/** Rank 0 computes 150 ms longer per step while we wait to kill: the run cannot end first. */
const SLOW = { RINGTRAIN_FAULT_SLOW_RANK: '0:150' };

interface Started {
  child: ChildProcess;
  exited: Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** What it has printed on stderr so far. */
  stderr: () => string;
}
const children: ChildProcess[] = [];

function start(args: string[], env: NodeJS.ProcessEnv = {}): Started {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on('exit', (code) => resolve({ code, stdout, stderr })),
  );
  return { child, exited, stderr: () => stderr };
}

/** The one command line a pod spec would hold. */
function coordinatorArgs(out: string, port: number): string[] {
  return [
    'coordinator',
    job,
    '--port',
    String(port),
    '--host',
    '127.0.0.1',
    '--expect-workers',
    '2',
    '--out',
    out,
    '--resume-if-exists',
  ];
}

function startWorkers(port: number, reconnectMs: number, env: NodeJS.ProcessEnv = {}): Started[] {
  return [0, 1].map(() =>
    start(
      ['worker', '--coordinator', `127.0.0.1:${port}`, '--host', '127.0.0.1', '--reconnect-ms', String(reconnectMs)],
      env,
    ),
  );
}

/** Polls (bounded) until `condition` holds. */
async function waitUntil(what: string, condition: () => boolean, timeoutMs = 90_000): Promise<void> {
  for (let waitedMs = 0; waitedMs < timeoutMs; waitedMs += 50) {
    if (condition()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Waits until this coordinator has written its coordinator.json (it admits workers from then on). */
function coordinatorUp(out: string, coordinator: Started): Promise<void> {
  const file = path.join(out, 'coordinator.json');
  return waitUntil(`coordinator pid ${coordinator.child.pid} in ${file}`, () => {
    if (coordinator.child.exitCode !== null)
      throw new Error(
        `the coordinator exited ${coordinator.child.exitCode} before admitting workers: ${coordinator.stderr()}`,
      );
    return (
      existsSync(file) && (JSON.parse(readFileSync(file, 'utf8')) as { pid: number }).pid === coordinator.child.pid
    );
  });
}

function loggedSteps(out: string): number[] {
  return readMetrics(path.join(out, 'metrics.jsonl'))
    .filter((r) => r['type'] === 'step')
    .map((r) => Number(r['step']));
}

function checkpointSteps(out: string): number[] {
  const names = existsSync(path.join(out, 'checkpoints')) ? readdirSync(path.join(out, 'checkpoints')) : [];
  return names.filter((n) => /^step-\d{9}$/.test(n)).map((n) => Number(n.slice('step-'.length)));
}

function finalWeights(out: string): Float32Array {
  const bytes = readFileSync(path.join(out, 'model', 'weights.bin'));
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

function maxDifference(a: Float32Array, b: Float32Array): number {
  expect(b.length).toBe(a.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs((a[i] ?? 0) - (b[i] ?? 0)));
  return max;
}

/** Starts a run, lets it pass step `killAfterSteps`, and SIGKILLs its coordinator. */
async function runAndKill(out: string, port: number, reconnectMs: number, killAfterSteps: number) {
  const first = start(coordinatorArgs(out, port));
  await coordinatorUp(out, first);
  const workers = startWorkers(port, reconnectMs, SLOW);
  await waitUntil(`${killAfterSteps} steps in ${out}`, () => loggedSteps(out).length >= killAfterSteps);
  first.child.kill('SIGKILL');
  await first.exited;
  return { first, workers };
}

let baseline: Float32Array;
beforeAll(async () => {
  const whole = path.join(dir, 'whole');
  const result = await runCli(['train', job, '--workers', '2', '--out', whole]);
  expect(result.code, result.stderr).toBe(0);
  baseline = finalWeights(whole);
}, 180_000);

afterEach(() => {
  for (const child of children.splice(0))
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('ringtrain coordinator --out DIR --resume-if-exists, SIGKILLed and started again unchanged', () => {
  it('starts a fresh run, then resumes from the newest verified checkpoint when its workers are gone too', async () => {
    const out = path.join(dir, 'from-checkpoint');
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    // --reconnect-ms 0: the workers leave with their coordinator (as when a JobSet restarts every pod).
    const { first, workers } = await runAndKill(out, port, 0, 12);
    expect((await first.exited).stdout).not.toMatch(/holds a run/);
    await Promise.all(workers.map((w) => w.exited));
    const newest = Math.max(...checkpointSteps(out));
    expect(newest).toBeGreaterThanOrEqual(8);

    const second = start(coordinatorArgs(out, port));
    await coordinatorUp(out, second);
    startWorkers(port, 0);
    const result = await second.exited;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/holds a run; continuing it \(--resume-if-exists\)/);
    expect(result.stdout).toContain(
      `resumed from checkpoint ${path.join(out, 'checkpoints', `step-${String(newest).padStart(9, '0')}`)}`,
    );
    expect(result.stdout).toMatch(new RegExp(`resuming at step ${newest}\\b`));
    const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8')) as {
      steps: number;
      resumedFromStep: number;
    };
    expect(summary).toMatchObject({ steps: TOTAL_STEPS, resumedFromStep: newest });
    // Every step is logged; the ones after the checkpoint twice (before the kill and after the resume).
    expect(new Set(loggedSteps(out))).toEqual(new Set(Array.from({ length: TOTAL_STEPS }, (_, i) => i)));
    expect(maxDifference(baseline, finalWeights(out))).toBeLessThan(1e-6);
  }, 300_000);

  it('takes the newer in-memory state of workers that outlived it and rejoin', async () => {
    const out = path.join(dir, 'from-workers');
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const { workers } = await runAndKill(out, port, 60_000, 13);
    const newest = Math.max(...checkpointSteps(out));

    const second = start(coordinatorArgs(out, port));
    const result = await second.exited;
    expect(result.code, result.stderr).toBe(0);
    const resumedAt = Number(
      /resumed from the in-memory state of a rejoining worker at step (\d+)/.exec(result.stdout)?.[1],
    );
    expect(resumedAt, result.stdout).toBeGreaterThan(newest);
    expect((await Promise.all(workers.map((w) => w.exited))).map((w) => w.code)).toEqual([0, 0]);
    expect(new Set(loggedSteps(out))).toEqual(new Set(Array.from({ length: TOTAL_STEPS }, (_, i) => i)));
    expect(maxDifference(baseline, finalWeights(out))).toBeLessThan(1e-6);
  }, 300_000);
});
