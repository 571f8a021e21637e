// Runs the built CLI (dist/cli/main.js) as a real child process, bounded in time.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
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

export function runCli(
  args: string[],
  options: { cwd?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: options.cwd ?? REPO_ROOT,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `ringtrain ${args.join(' ')} did not finish within ${options.timeoutMs ?? 180_000} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`,
        ),
      );
    }, options.timeoutMs ?? 180_000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

export function tempDir(prefix = 'ringtrain-test-'): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
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

/** Waits (bounded, 30 s) for the coordinator to record its listening port in <run>/coordinator.json. */
export async function waitForCoordinatorPort(runDir: string): Promise<number> {
  const file = path.join(runDir, 'coordinator.json');
  for (let i = 0; i < 300; i++) {
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
