// The environment embedded-mode workers start with (see LocalWorkers.workerEnv).
import { describe, expect, it } from 'vitest';
import {
  cliEntry,
  LocalWorkers,
  PINNED_MMAP_THRESHOLD,
  WORKER_NODE_FLAGS,
  workerProcessArgv,
} from '../../coordinator/local-workers.js';
import { EXIT_WITH_PARENT_FLAG, parentWatchPreload } from '../../shared/parent-watch.js';

describe('WORKER_NODE_FLAGS', () => {
  it('are flags this Node accepts, in NODE_OPTIONS too (the container images set them there)', () => {
    for (const flag of WORKER_NODE_FLAGS)
      expect(process.allowedNodeEnvironmentFlags.has(flag.split('=')[0]!)).toBe(true);
  });
});

describe('LocalWorkers.workerEnv', () => {
  it("pins glibc's mmap threshold and passes everything else through", () => {
    const env = LocalWorkers.workerEnv(undefined, { PATH: '/bin', RINGTRAIN_LOG_LEVEL: 'info' });
    expect(env).toEqual({ PATH: '/bin', RINGTRAIN_LOG_LEVEL: 'info', MALLOC_MMAP_THRESHOLD_: PINNED_MMAP_THRESHOLD });
    expect(PINNED_MMAP_THRESHOLD).toBe('131072');
  });

  it("keeps the user's own threshold", () => {
    expect(LocalWorkers.workerEnv(undefined, { MALLOC_MMAP_THRESHOLD_: '65536' })['MALLOC_MMAP_THRESHOLD_']).toBe(
      '65536',
    );
  });

  it('gives a GPU worker only its own GPU', () => {
    const env = LocalWorkers.workerEnv(2, { CUDA_VISIBLE_DEVICES: '0,1,2,3' });
    expect(env['CUDA_VISIBLE_DEVICES']).toBe('2');
    expect(env['RINGTRAIN_GPU_INDEX']).toBe('2');
    expect(env['MALLOC_MMAP_THRESHOLD_']).toBe(PINNED_MMAP_THRESHOLD);
  });
});

describe('workerProcessArgv (the one way local workers start)', () => {
  it('runs every worker with the worker Node flags and the parent watch, then `<cli> worker <args>`', () => {
    const argv = workerProcessArgv(['--coordinator', '127.0.0.1:7070']);
    const preload = parentWatchPreload();
    expect(argv.slice(0, WORKER_NODE_FLAGS.length)).toEqual([...WORKER_NODE_FLAGS]);
    expect(argv.slice(WORKER_NODE_FLAGS.length)).toEqual([
      ...preload,
      cliEntry(),
      'worker',
      '--coordinator',
      '127.0.0.1:7070',
      EXIT_WITH_PARENT_FLAG,
    ]);
    expect(argv).toContain('--max-semi-space-size=2');
  });
});
