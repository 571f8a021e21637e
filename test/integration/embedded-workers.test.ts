// Embedded workers (`ringtrain train`) never outlive their coordinator: SIGKILLed while it is
// still starting up (workers spawned, no ring yet), it runs no exit handler, and its workers
// must still leave by themselves at once rather than keep dialling it for a minute.
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { alive, CLI, smallMnistJob, tempDir, writeJob } from '../helpers/cli.js';
import { workerPids } from '../helpers/run-watch.js';

const dir = tempDir('ringtrain-embedded-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('a coordinator SIGKILLed during its own startup', () => {
  it('takes its embedded workers with it', async () => {
    const job = writeJob(dir, smallMnistJob({ workers: 3 }));
    const coordinator = spawn(process.execPath, [CLI, 'train', job, '--workers', '3', '--out', path.join(dir, 'run')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    coordinator.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    coordinator.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<void>((resolve) => coordinator.on('exit', () => resolve()));
    // The workers share the coordinator's stderr: the pipe closes when the last of them is gone.
    const stderrClosed = new Promise<void>((resolve) => coordinator.stderr.on('close', () => resolve()));
    // The moment all three workers exist (still loading, nowhere near a ring), kill it.
    let workers: number[] = [];
    for (let i = 0; i < 600 && workers.length < 3; i++) {
      await sleep(20);
      workers = workerPids(coordinator.pid ?? -1);
    }
    expect(workers).toHaveLength(3);
    coordinator.kill('SIGKILL');
    await exited;
    expect(stdout).not.toMatch(/workers \(\w+ backend\)/); // the ring had not formed
    // Each worker says why it leaves and exits. Bounded well below the minute a worker used to
    // keep dialling a dead coordinator; a hang fails here.
    await Promise.race([stderrClosed, sleep(20_000)]);
    for (let i = 0; i < 50 && workers.some(alive); i++) await sleep(100); // reaped by init
    const leftovers = workers.filter(alive);
    for (const pid of leftovers) process.kill(pid, 'SIGKILL'); // leave nothing behind, even on failure
    expect(leftovers).toEqual([]);
    // Each worker's line starts with its rank: embedded workers share the coordinator's stderr.
    expect(
      stderr.match(/^\[rank [012]\] ringtrain: the coordinator that started this worker is gone; exiting$/gm),
    ).toHaveLength(3);
  });
});
