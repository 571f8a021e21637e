import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readMetrics, RunDirectory } from '../../coordinator/run/run-directory.js';
import { JobConfigError } from '../../shared/errors.js';

const DEAD_PID = 99_999_999;
const NOW = new Date(Date.UTC(2024, 0, 2, 3, 4, 5));

let root: string;
const opened: RunDirectory[] = [];
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'ringtrain-runs-'));
});
afterEach(async () => {
  for (const run of opened.splice(0)) await run.close();
  fs.rmSync(root, { recursive: true, force: true });
});

async function track(run: Promise<RunDirectory>): Promise<RunDirectory> {
  const r = await run;
  opened.push(r);
  return r;
}

describe('RunDirectory.create', () => {
  it('makes <root>/<UTC timestamp>-<name> with checkpoints/ and points latest at it', async () => {
    const run = await track(RunDirectory.create({ root, name: 'mnist-mlp', now: NOW }));
    expect(run.path).toBe(path.join(root, '20240102-030405-mnist-mlp'));
    expect(fs.statSync(run.checkpointsDir).isDirectory()).toBe(true);
    expect(run.modelDir).toBe(path.join(run.path, 'model'));
    expect(fs.readlinkSync(path.join(root, 'latest'))).toBe('20240102-030405-mnist-mlp');
  });

  it('adds a suffix when the name is taken and moves latest to the newest run', async () => {
    await track(RunDirectory.create({ root, name: 'job', now: NOW }));
    const second = await track(RunDirectory.create({ root, name: 'job', now: NOW }));
    expect(path.basename(second.path)).toBe('20240102-030405-job-2');
    expect(fs.realpathSync(path.join(root, 'latest'))).toBe(fs.realpathSync(second.path));
    expect(fs.readdirSync(root).sort()).toEqual(['20240102-030405-job', '20240102-030405-job-2', 'latest']);
  });

  it('uses --out as is, with latest as a relative link when a root is given', async () => {
    const out = path.join(root, 'elsewhere', 'my-run');
    const run = await track(RunDirectory.create({ root: path.join(root, 'runs'), explicitDir: out, name: 'job' }));
    expect(run.path).toBe(out);
    expect(fs.readlinkSync(path.join(root, 'runs', 'latest'))).toBe(path.join('..', 'elsewhere', 'my-run'));
    expect(fs.realpathSync(path.join(root, 'runs', 'latest'))).toBe(fs.realpathSync(out));
  });

  it('refuses an --out folder that already holds a run', async () => {
    const out = path.join(root, 'out');
    const run = await track(RunDirectory.create({ explicitDir: out, name: 'job' }));
    await run.writeJob('name: job\n');
    await expect(RunDirectory.create({ explicitDir: out, name: 'job' })).rejects.toThrow(
      /already holds a run.*--resume/,
    );
  });
});

describe('RunDirectory.open', () => {
  it('opens a run through the latest link and reads its job', async () => {
    const run = await track(RunDirectory.create({ root, name: 'job', now: NOW }));
    await run.writeJob('name: job\nseed: 7\n');
    const reopened = await track(RunDirectory.open(path.join(root, 'latest')));
    expect(reopened.path).toBe(fs.realpathSync(run.path));
    expect(await reopened.readJobText()).toBe('name: job\nseed: 7\n');
  });

  it('explains a missing folder and a folder without job.yaml', async () => {
    await expect(RunDirectory.open(path.join(root, 'nope'))).rejects.toThrow(JobConfigError);
    await expect(RunDirectory.open(path.join(root, 'nope'))).rejects.toThrow(/no such run directory/);
    await expect(RunDirectory.open(root)).rejects.toThrow(/no job\.yaml/);
  });
});

describe('files in the run', () => {
  it('writes summary.json and the model directory atomically, replacing an old model', async () => {
    const run = await track(RunDirectory.create({ root, name: 'job', now: NOW }));
    await run.writeSummary({ worldSize: 2, steps: 10 });
    await run.writeModel({ 'model.json': '{"v":1}', 'weights.bin': new Uint8Array([1, 2, 3]) });
    await run.writeModel({ 'model.json': '{"v":2}', 'weights.bin': new Uint8Array([4]) });
    expect(JSON.parse(fs.readFileSync(path.join(run.path, 'summary.json'), 'utf8'))).toEqual({
      worldSize: 2,
      steps: 10,
    });
    expect(fs.readFileSync(path.join(run.modelDir, 'model.json'), 'utf8')).toBe('{"v":2}');
    expect([...fs.readFileSync(path.join(run.modelDir, 'weights.bin'))]).toEqual([4]);
    expect(fs.readdirSync(run.path).sort()).toEqual(['checkpoints', 'model', 'summary.json']);
  });

  it('reopening after a crash mid model swap puts the old model back', async () => {
    const run = await track(RunDirectory.create({ root, name: 'job', now: NOW }));
    await run.writeJob('name: job\n');
    await run.writeModel({ 'model.json': 'old' });
    fs.renameSync(run.modelDir, `${run.modelDir}.old-${DEAD_PID}-0badf00d`);
    const reopened = await track(RunDirectory.open(run.path));
    expect(fs.readFileSync(path.join(reopened.modelDir, 'model.json'), 'utf8')).toBe('old');
  });
});

describe('metrics.jsonl', () => {
  it('appends step and validation lines that readMetrics returns in order', async () => {
    const run = await track(RunDirectory.create({ root, name: 'job', now: NOW }));
    run.appendMetrics({ type: 'step', step: 1, loss: 2.5 });
    run.appendMetrics({ type: 'validation', step: 1, 'validation.loss': 2.1 });
    run.appendMetrics({ type: 'step', step: 2, loss: 2.0 });
    expect(readMetrics(run.metricsFile).map((r) => r['step'])).toEqual([1, 1, 2]);
    await run.close();
    expect(() => run.appendMetrics({ type: 'step', step: 3 })).toThrow(/closed/);
    expect(readMetrics(run.metricsFile)).toHaveLength(3);
  });

  it('skips a torn final line, and a resumed run cuts it off before appending', async () => {
    const run = await track(RunDirectory.create({ root, name: 'job', now: NOW }));
    await run.writeJob('name: job\n');
    run.appendMetrics({ type: 'step', step: 1, loss: 1 });
    await run.close();
    fs.appendFileSync(run.metricsFile, '{"type":"step","step":2,"lo');
    expect(readMetrics(run.metricsFile)).toEqual([{ type: 'step', step: 1, loss: 1 }]);

    const resumed = await track(RunDirectory.open(run.path));
    resumed.appendMetrics({ type: 'step', step: 2, loss: 0.5 });
    await resumed.close();
    expect(fs.readFileSync(run.metricsFile, 'utf8').split('\n')).toHaveLength(3);
    expect(readMetrics(run.metricsFile).map((r) => r['step'])).toEqual([1, 2]);
  });

  it('names the line of a corrupt middle line, and treats a missing file as empty', () => {
    const file = path.join(root, 'metrics.jsonl');
    expect(readMetrics(file)).toEqual([]);
    fs.writeFileSync(file, '{"step":1}\nnot json\n{"step":2}\n');
    expect(() => readMetrics(file)).toThrow(`${file}:2`);
  });
});
