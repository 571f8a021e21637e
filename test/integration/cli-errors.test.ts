// Bad input of every kind gets one clear line naming the problem, a non-zero exit code, and no
// stack trace.
import { createServer, type Server } from 'node:net';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  envWithPath,
  fakeNvidiaSmi,
  runCli,
  smallMnistJob,
  tempDir,
  waitForCoordinatorPort,
  writeJob,
} from '../helpers/cli.js';

const dir = tempDir('ringtrain-errors-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** One human line besides JSON log lines (events the run records, at warn level). */
function expectOneLineBesidesLogs(stderr: string, pattern: RegExp): void {
  const lines = stderr.trim().split('\n');
  const human = lines.filter((l) => !l.startsWith('{'));
  expect(human, stderr).toHaveLength(1);
  expect(human[0]).toMatch(pattern);
  expect(stderr).not.toMatch(/\n\s+at /);
}

function expectOneLine(stderr: string, pattern: RegExp): void {
  const lines = stderr.trim().split('\n');
  expect(lines, stderr).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  expect(stderr).not.toMatch(/\n\s+at /);
}

describe('bad job files', () => {
  const cases: Array<{ name: string; content: string; file?: string; message: RegExp }> = [
    { name: 'missing file', content: '', file: 'nope.yaml', message: /nope\.yaml: file not found/ },
    { name: 'empty file', content: '   \n', message: /file is empty/ },
    { name: 'invalid YAML', content: 'name: [unclosed\n', message: /not valid YAML/ },
    { name: 'invalid JSON', content: '{"name": ', file: 'bad.json', message: /not valid JSON/ },
    { name: 'not a mapping', content: '- a\n- b\n', message: /must be a mapping/ },
    { name: 'unknown top-level key', content: 'epochz: 3\n', message: /unknown key "epochz"/ },
    {
      name: 'negative batch size',
      content: JSON.stringify({ ...smallMnistJob(), training: { epochs: 1, batchSize: -4 } }),
      message: /training\.batchSize: Too small/,
    },
    {
      name: 'unknown layer type',
      content: JSON.stringify({ ...smallMnistJob(), model: { input: [784], layers: [{ type: 'dense2', units: 3 }] } }),
      message: /model\.layers\.0\.type/,
    },
    {
      name: 'unknown optimizer key',
      content: JSON.stringify({ ...smallMnistJob(), optimizer: { type: 'adam', learningRate: 0.1, beta3: 1 } }),
      message: /optimizer: unknown key "beta3"/,
    },
    {
      name: 'bad loss',
      content: JSON.stringify({ ...smallMnistJob(), loss: 'hinge' }),
      message: /loss: Invalid option/,
    },
    {
      name: 'dense after image input',
      content: JSON.stringify({
        ...smallMnistJob(),
        model: { input: [28, 28, 1], layers: [{ type: 'dense', units: 10, activation: 'softmax' }] },
      }),
      message: /add a flatten layer/,
    },
  ];
  it.each(cases)('$name', async ({ content, file, message }) => {
    const jobFile = path.join(dir, file ?? `job-${Math.random().toString(36).slice(2)}.yaml`);
    if (file !== 'nope.yaml') writeFileSync(jobFile, content);
    const result = await runCli(['train', jobFile, '--out', path.join(dir, 'never')]);
    expect(result.code).toBe(2);
    expectOneLine(result.stderr, message);
  });
});

describe('bad data and bad peers', () => {
  let blocker: Server | undefined;
  afterAll(() => blocker?.close());

  it('a missing dataset file names the file', async () => {
    const job = writeJob(
      dir,
      { ...smallMnistJob(), data: { format: 'csv', path: 'missing.csv', label: 'y', task: 'regression' } },
      'csv-job.yaml',
    );
    const result = await runCli(['train', job, '--out', path.join(dir, 'csv-run')]);
    expect(result.code).toBe(3);
    expectOneLine(result.stderr, /missing\.csv/);
  });

  it('a malformed dataset file names the file and line', async () => {
    writeFileSync(path.join(dir, 'bad.csv'), 'a,b,y\n1,2,3\n4,x,6\n');
    const job = writeJob(
      dir,
      {
        ...smallMnistJob(),
        data: { format: 'csv', path: 'bad.csv', label: 'y', task: 'regression' },
        model: { input: [2], layers: [{ type: 'dense', units: 1 }] },
        loss: 'meanSquaredError',
        metrics: ['mae'],
      },
      'bad-csv-job.yaml',
    );
    const result = await runCli(['train', job, '--out', path.join(dir, 'bad-csv-run')]);
    expect(result.code).toBe(3);
    expectOneLine(result.stderr, /bad\.csv:3: .*"b"/);
  });

  it('a backend that is not installed is named, with the fix, before anything starts', async () => {
    const out = path.join(dir, 'backend-run');
    const result = await runCli(['train', '--backend', 'tensorflow', '--out', out]);
    expect(result.code).toBe(4);
    expectOneLine(result.stderr, /backend "tensorflow" is unavailable: .*npm install @tensorflow\/tfjs-node@4\.22\.0/);
    expect(existsSync(out)).toBe(false);
  });

  it('an unreachable coordinator fails after bounded retries, saying so at each attempt', async () => {
    // The default log level (no --log-level, no RINGTRAIN_LOG_LEVEL) must show every attempt.
    const env = { ...process.env };
    delete env['RINGTRAIN_LOG_LEVEL'];
    const result = await runCli(['worker', '--coordinator', '127.0.0.1:1', '--connect-attempts', '3'], { env });
    expect(result.code).toBe(5);
    const lines = result.stderr.trim().split('\n');
    const attempts = lines
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { attempt?: number; msg: string })
      .filter((r) => /not reachable/.test(r.msg));
    expect(attempts.map((a) => a.attempt)).toEqual([1, 2, 3]);
    expect(attempts[0]?.msg).toMatch(/127\.0\.0\.1:1 not reachable \(attempt 1 of 3\); retrying/);
    expect(lines.filter((l) => !l.startsWith('{'))).toEqual([lines.at(-1)]);
    expect(lines.at(-1)).toMatch(/^ringtrain: cannot reach coordinator at 127\.0\.0\.1:1 after 3 attempts/);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it('a port already in use is named', async () => {
    blocker = createServer();
    const port = await new Promise<number>((resolve) =>
      blocker?.listen(0, '127.0.0.1', () => resolve((blocker?.address() as { port: number }).port)),
    );
    const job = writeJob(dir, smallMnistJob(), 'port-job.yaml');
    const result = await runCli([
      'coordinator',
      job,
      '--port',
      String(port),
      '--host',
      '127.0.0.1',
      '--out',
      path.join(dir, 'port-run'),
    ]);
    expect(result.code).toBe(7);
    expectOneLine(result.stderr, new RegExp(`127\\.0\\.0\\.1:${port}: address already in use`));
  });

  it('a worker whose job hash differs is refused', async () => {
    const job = writeJob(dir, smallMnistJob(), 'hash-job.yaml');
    const other = writeJob(dir, smallMnistJob({ seed: 8 }), 'hash-other.yaml');
    // The coordinator is stopped once the worker is refused: no join deadline has to outlast a slow start.
    const stop = new AbortController();
    const coordinator = runCli(
      [
        'coordinator',
        job,
        '--port',
        '0',
        '--host',
        '127.0.0.1',
        '--expect-workers',
        '1',
        '--join-timeout',
        '300',
        '--out',
        path.join(dir, 'hash-run'),
      ],
      { signal: stop.signal },
    );
    // Find the port the coordinator printed; it waits for workers after binding.
    const port = await waitForCoordinatorPort(path.join(dir, 'hash-run'));
    const worker = await runCli(['worker', '--coordinator', `127.0.0.1:${port}`, '--job', other]);
    stop.abort();
    expect(worker.code).toBe(6);
    expectOneLine(worker.stderr, /JOB_HASH_MISMATCH.*differs from the coordinator's/);
    const coord = await coordinator;
    expect(coord.code).not.toBe(0);
  });
});

describe('--resume-if-exists', () => {
  it('without --out names the missing flag', async () => {
    const job = writeJob(dir, smallMnistJob(), 'auto-job.yaml');
    const result = await runCli(['coordinator', job, '--port', '0', '--resume-if-exists']);
    expect(result.code).toBe(2);
    expectOneLine(result.stderr, /^ringtrain: --resume-if-exists: needs --out DIR/);
  });

  it('refuses a run directory that holds another job, and leaves it as it was', async () => {
    const run = path.join(dir, 'auto-other');
    mkdirSync(run);
    writeJob(run, smallMnistJob({ seed: 8 }), 'job.yaml');
    const job = writeJob(dir, smallMnistJob(), 'auto-this.yaml');
    const result = await runCli(['train', job, '--out', run, '--resume-if-exists']);
    expect(result.code).toBe(2);
    expect(result.stdout).toMatch(/holds a run; continuing it/);
    expectOneLine(
      result.stderr,
      /^ringtrain: .*auto-other\/job\.yaml: seed: 8 in this run, 7 now \(it alters the trajectory so far\); on resume only run-length settings may change/,
    );
    expect(readdirSync(run)).toEqual(['job.yaml']);
  });
});

describe('the command-line contract', () => {
  const flagCases: Array<{ name: string; args: string[]; message: RegExp }> = [
    {
      name: 'train --epochs 0',
      args: ['train', '--epochs', '0'],
      message: /--epochs must be a positive integer, got "0"/,
    },
    { name: 'an unknown flag', args: ['train', '--epochz', '3'], message: /unknown option '--epochz'/ },
    {
      name: 'a bad value',
      args: ['train', '--batch-size', 'many'],
      message: /--batch-size must be a positive integer/,
    },
    { name: 'a bad choice', args: ['train', '--backend', 'gpu'], message: /--backend.*gpu.*Allowed choices/ },
    { name: 'a missing required flag', args: ['coordinator'], message: /required option '--port <P>'/ },
    { name: 'an unknown command', args: ['trian'], message: /unknown command 'trian'/ },
    {
      name: '--resume of a non-run',
      args: ['train', '--resume', '/nonexistent-run'],
      message: /--resume \/nonexistent-run: no job\.yaml/,
    },
  ];
  it.each(flagCases)('$name exits 2 with one line', async ({ args, message }) => {
    const out = path.join(dir, `flag-${Math.random().toString(36).slice(2)}`);
    const result = await runCli([...args, '--out', out]);
    expect(result.code, result.stderr).toBe(2);
    expectOneLine(result.stderr, /^ringtrain: /);
    expect(result.stderr).toMatch(message);
    expect(existsSync(out)).toBe(false);
  });

  it('--gpus all with no GPU is one line and exit 2, not a stack', async () => {
    const env = envWithPath(fakeNvidiaSmi(dir, 0));
    const result = await runCli(['train', '--gpus', 'all', '--out', path.join(dir, 'no-gpu')], {
      timeoutMs: 30_000,
      env,
    });
    expect(result.code).toBe(2);
    expectOneLine(
      result.stderr,
      /^ringtrain: --gpus all: no GPU is visible on this machine \(nvidia-smi -L lists 0 GPUs\)$/,
    );
    expect(existsSync(path.join(dir, 'no-gpu'))).toBe(false);
  });

  it('--gpus naming GPUs this machine lacks fails instead of training on the CPU', async () => {
    const env = envWithPath(fakeNvidiaSmi(dir, 1));
    const train = await runCli(['train', '--gpus', '0,1', '--out', path.join(dir, 'gpu-01')], {
      timeoutMs: 30_000,
      env,
    });
    expect(train.code).toBe(2);
    expectOneLine(train.stderr, /^ringtrain: --gpus 0,1: GPU 1 is not on this machine \(nvidia-smi -L lists 1 GPU\)$/);
    expect(existsSync(path.join(dir, 'gpu-01'))).toBe(false);
    const worker = await runCli(['worker', '--coordinator', '127.0.0.1:1', '--gpus', '2'], { timeoutMs: 30_000, env });
    expect(worker.code).toBe(2);
    expectOneLine(worker.stderr, /^ringtrain: --gpus 2: GPU 1 is not on this machine/);
  });

  /** Starts a coordinator that waits for 2 workers that never come; resolves once it is listening. */
  async function waitingCoordinator(name: string): Promise<{ pid: number; done: ReturnType<typeof runCli> }> {
    const job = writeJob(dir, smallMnistJob(), `${name}.yaml`);
    const out = path.join(dir, name);
    const done = runCli(
      ['coordinator', job, '--port', '0', '--host', '127.0.0.1', '--expect-workers', '2', '--out', out],
      { timeoutMs: 120_000 },
    );
    await waitForCoordinatorPort(out);
    const { pid } = JSON.parse(readFileSync(path.join(out, 'coordinator.json'), 'utf8')) as { pid: number };
    return { pid, done };
  }

  it.each([
    { signal: 'SIGTERM' as const, code: 143 },
    { signal: 'SIGINT' as const, code: 130 },
  ])('$signal while the coordinator waits for workers exits $code with one line', async ({ signal, code }) => {
    const coordinator = await waitingCoordinator(`waiting-${signal}`);
    process.kill(coordinator.pid, signal);
    const result = await coordinator.done;
    expect(result.code).toBe(code);
    expectOneLine(result.stderr, new RegExp(`^ringtrain: stopped by ${signal} before training started`));
  });

  it('SIGINT during training checkpoints and exits 130', async () => {
    const job = writeJob(
      dir,
      smallMnistJob({ training: { epochs: 200, batchSize: 32 }, checkpoint: { everySteps: 0, keep: 2 } }),
      'sigint-job.yaml',
    );
    const out = path.join(dir, 'sigint-run');
    const done = runCli(['train', job, '--out', out], { timeoutMs: 180_000 });
    await waitForCoordinatorPort(out);
    const { pid } = JSON.parse(readFileSync(path.join(out, 'coordinator.json'), 'utf8')) as { pid: number };
    // Bounded wait (60 s) for the first recorded step, so the signal lands mid-training.
    const metrics = path.join(out, 'metrics.jsonl');
    for (let i = 0; i < 600 && !(existsSync(metrics) && readFileSync(metrics, 'utf8').includes('"type":"step"')); i++)
      await new Promise((r) => setTimeout(r, 100));
    process.kill(pid, 'SIGINT');
    const result = await done;
    expect(result.code, result.stderr).toBe(130);
    expectOneLineBesidesLogs(
      result.stderr,
      /^ringtrain: stopped by SIGINT after step \d+; checkpointed, continue with: ringtrain train --resume /,
    );
  });

  it('a worker that fails tells the coordinator why, and the coordinator names it', async () => {
    const job = writeJob(dir, smallMnistJob(), 'reason-job.yaml');
    const out = path.join(dir, 'reason-run');
    const coordinator = runCli(
      [
        'coordinator',
        job,
        '--port',
        '0',
        '--host',
        '127.0.0.1',
        '--expect-workers',
        '1',
        '--join-timeout',
        '60',
        '--out',
        out,
      ],
      { timeoutMs: 120_000 },
    );
    const port = await waitForCoordinatorPort(out);
    // Joins, then cannot load the backend it was told to use: it exits 4 with its own line.
    const worker = await runCli(['worker', '--coordinator', `127.0.0.1:${port}`, '--backend', 'tensorflow'], {
      timeoutMs: 60_000,
    });
    expect(worker.code).toBe(4);
    const result = await coordinator;
    expect(result.code).toBe(8);
    expectOneLine(
      result.stderr,
      new RegExp(`^ringtrain: worker rank 0 \\([^,]+, pid \\d+\\) failed: backend "tensorflow" is unavailable: `),
    );
    expect(result.stderr).not.toMatch(/rank -1|control stream ended/);
  });
});
