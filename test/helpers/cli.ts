// Runs the built CLI (dist/cli/main.js) as a real child process, bounded in time, and makes the
// temp folders tests work in (removed after each test file).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = path.join(REPO_ROOT, 'dist/cli/main.js');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** How long one CLI run may take before it counts as hung: far above what it takes on a busy machine. */
export const RUN_LIMIT_MS = 300_000;

export interface RunOptions {
  cwd?: string;
  /** Only catches a hang. @default RUN_LIMIT_MS */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /** Aborting sends the process SIGTERM (for a process the test ends itself, once it has seen what it needed). */
  signal?: AbortSignal;
}

export function runCli(args: string[], options: RunOptions = {}): Promise<CliResult> {
  return runNode([CLI, ...args], options);
}

/** Runs `node <args>` (a script and its arguments) as a child process, bounded in time. */
export function runNode(args: string[], options: RunOptions = {}): Promise<CliResult> {
  const timeoutMs = options.timeoutMs ?? RUN_LIMIT_MS;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd: options.cwd ?? REPO_ROOT,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group, so that a hang kills what it started too (a coordinator's workers).
      detached: true,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    child.on('error', () => undefined); // an abort; 'exit' reports how the process ended
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      killGroup(child.pid);
      reject(
        new Error(
          `node ${args.join(' ')} did not finish within ${timeoutMs} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`,
        ),
      );
    }, timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Folders made by tempDir() in this test file, removed by removeTempDirs() after it (see temp-dirs-setup.ts). */
const tempDirs: string[] = [];

function killGroup(pid: number | undefined): void {
  try {
    if (pid !== undefined) process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

export function tempDir(prefix = 'ringtrain-test-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

/** Removes every folder tempDir() made; RINGTRAIN_KEEP_TEST_DIRS=1 keeps them for a post-mortem. */
export function removeTempDirs(): void {
  if (process.env['RINGTRAIN_KEEP_TEST_DIRS'] === '1') return;
  // Retries: a process of the test may still be closing a file in there as the test ends.
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
}

/** Writes a job object as YAML into `dir` and returns its path. */
export function writeJob(dir: string, job: Record<string, unknown>, name = 'job.yaml'): string {
  const file = path.join(dir, name);
  writeFileSync(file, name.endsWith('.json') ? JSON.stringify(job) : stringify(job));
  return file;
}

/** True while a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A small, fast MNIST MLP job for tests. */
export function smallMnistJob(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: 'test-mlp',
    seed: 7,
    data: { format: 'mnist', limit: 1500, split: { validation: 0.1, test: 0.1 } },
    model: {
      input: [784],
      layers: [
        { type: 'dense', units: 32, activation: 'relu' },
        { type: 'dense', units: 10, activation: 'softmax' },
      ],
    },
    loss: 'categoricalCrossentropy',
    metrics: ['accuracy'],
    optimizer: { type: 'adam', learningRate: 0.003 },
    training: { epochs: 1, batchSize: 32 },
    workers: 2,
    backend: 'cpu',
    checkpoint: { everySteps: 10, keep: 2 },
    ...overrides,
  };
}

/** Waits (bounded, 120 s: a coordinator starts slowly on a busy machine) for it to record its listening port in <run>/coordinator.json. */
export async function waitForCoordinatorPort(runDir: string): Promise<number> {
  const file = path.join(runDir, 'coordinator.json');
  for (let i = 0; i < 1200; i++) {
    if (existsSync(file)) return (JSON.parse(readFileSync(file, 'utf8')) as { port: number }).port;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`coordinator did not write ${file}`);
}

/**
 * A folder holding a stand-in `nvidia-smi` whose `-L` lists `count` GPUs, to put first on PATH:
 * GPU placement is then tested the same on machines with and without GPUs.
 */
export function fakeNvidiaSmi(parent: string, count: number): string {
  const dir = mkdtempSync(path.join(parent, `nvidia-smi-${count}-`));
  const lines = Array.from({ length: count }, (_, i) => `GPU ${i}: Test GPU (UUID: GPU-${i})`).join('\n');
  writeFileSync(path.join(dir, 'nvidia-smi'), `#!/bin/sh\nprintf '%s\\n' '${lines}'\n`, { mode: 0o755 });
  return dir;
}

/** Environment whose PATH finds `binDir` first. */
export function envWithPath(binDir: string): NodeJS.ProcessEnv {
  return { PATH: `${binDir}${path.delimiter}${process.env['PATH'] ?? ''}` };
}
