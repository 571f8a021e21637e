// Bad input of every kind gets one clear line naming the problem, a non-zero exit code, and no
// stack trace.
import { createServer, type Server } from 'node:net';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli, smallMnistJob, tempDir, waitForCoordinatorPort, writeJob } from '../helpers/cli.js';

const dir = tempDir('ringtrain-errors-');

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
    const result = await runCli(['train', jobFile, '--out', path.join(dir, 'never')], { timeoutMs: 30_000 });
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
    const result = await runCli(['train', job, '--out', path.join(dir, 'csv-run')], { timeoutMs: 30_000 });
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
    const result = await runCli(['train', job, '--out', path.join(dir, 'bad-csv-run')], { timeoutMs: 30_000 });
    expect(result.code).toBe(3);
    expectOneLine(result.stderr, /bad\.csv:3: .*"b"/);
  });

  it('a backend that is not installed is named, with the fix, before anything starts', async () => {
    const out = path.join(dir, 'backend-run');
    const result = await runCli(['train', '--backend', 'tensorflow', '--out', out], { timeoutMs: 30_000 });
    expect(result.code).toBe(4);
    expectOneLine(result.stderr, /backend "tensorflow" is unavailable: .*npm install @tensorflow\/tfjs-node@4\.22\.0/);
    expect(existsSync(out)).toBe(false);
  });

  it('an unreachable coordinator fails after bounded retries', async () => {
    const result = await runCli(['worker', '--coordinator', '127.0.0.1:1', '--connect-attempts', '2'], {
      timeoutMs: 30_000,
    });
    expect(result.code).toBe(5);
    expectOneLine(result.stderr, /cannot reach coordinator at 127\.0\.0\.1:1 after 2 attempts/);
  });

  it('a port already in use is named', async () => {
    blocker = createServer();
    const port = await new Promise<number>((resolve) =>
      blocker?.listen(0, '127.0.0.1', () => resolve((blocker?.address() as { port: number }).port)),
    );
    const job = writeJob(dir, smallMnistJob(), 'port-job.yaml');
    const result = await runCli(
      ['coordinator', job, '--port', String(port), '--host', '127.0.0.1', '--out', path.join(dir, 'port-run')],
      { timeoutMs: 30_000 },
    );
    expect(result.code).toBe(7);
    expectOneLine(result.stderr, new RegExp(`127\\.0\\.0\\.1:${port}: address already in use`));
  });

  it('a worker whose job hash differs is refused', async () => {
    const job = writeJob(dir, smallMnistJob(), 'hash-job.yaml');
    const other = writeJob(dir, smallMnistJob({ seed: 8 }), 'hash-other.yaml');
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
        '20',
        '--out',
        path.join(dir, 'hash-run'),
      ],
      { timeoutMs: 60_000 },
    );
    // Find the port the coordinator printed; it waits for workers after binding.
    const port = await waitForCoordinatorPort(path.join(dir, 'hash-run'));
    const worker = await runCli(['worker', '--coordinator', `127.0.0.1:${port}`, '--job', other], {
      timeoutMs: 30_000,
    });
    expect(worker.code).toBe(6);
    expectOneLine(worker.stderr, /JOB_HASH_MISMATCH.*differs from the coordinator's/);
    const coord = await coordinator;
    expect(coord.code).not.toBe(0);
  });
});

describe('--resume-if-exists', () => {
  it('without --out names the missing flag', async () => {
    const job = writeJob(dir, smallMnistJob(), 'auto-job.yaml');
    const result = await runCli(['coordinator', job, '--port', '0', '--resume-if-exists'], { timeoutMs: 30_000 });
    expect(result.code).toBe(2);
    expectOneLine(result.stderr, /^ringtrain: --resume-if-exists: needs --out DIR/);
  });

  it('refuses a run directory that holds another job, and leaves it as it was', async () => {
    const run = path.join(dir, 'auto-other');
    mkdirSync(run);
    writeJob(run, smallMnistJob({ seed: 8 }), 'job.yaml');
    const job = writeJob(dir, smallMnistJob(), 'auto-this.yaml');
    const result = await runCli(['train', job, '--out', run, '--resume-if-exists'], { timeoutMs: 60_000 });
    expect(result.code).toBe(2);
    expect(result.stdout).toMatch(/holds a run; continuing it/);
    expectOneLine(
      result.stderr,
      /^ringtrain: .*auto-other\/job\.yaml: this run is of a different job \(hash \w+, this job \w+\)/,
    );
    expect(readdirSync(run)).toEqual(['job.yaml']);
  });
});
