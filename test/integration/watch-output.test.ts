// What a person or a script watching `ringtrain train` gets, from real runs (2 worker processes):
// plain lines off a TTY, a live bar on one (a pseudo-terminal through util-linux `script`),
// --json events, --quiet's one line, `--json | head` ending the run as SIGPIPE would, TensorBoard
// files that parse with valid CRCs and hold what metrics.jsonl holds, and logs with the run id,
// worker lines prefixed by rank and no key written twice.
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readMetrics } from '../../coordinator/run/run-directory.js';
import { FILE_VERSION, readEventFile } from '../../coordinator/tensorboard/event-codec.js';
import { CLI, REPO_ROOT, RUN_LIMIT_MS, runCli, smallMnistJob, tempDir, writeJob } from '../helpers/cli.js';

const dir = tempDir();
const job = writeJob(
  dir,
  smallMnistJob({ data: { format: 'mnist', limit: 900 }, training: { epochs: 2, batchSize: 32 } }),
);
/** 720 training samples in batches of 32. */
const STEPS = 2 * Math.ceil(720 / 32);

/** Keys that appear more than once at the top level of one JSON object line. */
function duplicateKeys(line: string): string[] {
  const seen = new Set<string>();
  const twice: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === '"') {
      let end = i + 1;
      while (line[end] !== '"') end += line[end] === '\\' ? 2 : 1;
      if (depth === 1 && expectKey) {
        const key = line.slice(i + 1, end);
        if (seen.has(key)) twice.push(key);
        seen.add(key);
        expectKey = false;
      }
      i = end;
    } else if (c === '{' || c === '[') {
      depth++;
      expectKey = depth === 1;
    } else if (c === '}' || c === ']') depth--;
    else if (c === ',' && depth === 1) expectKey = true;
  }
  return twice;
}

describe('watching a run', () => {
  it('off a TTY: one plain line per epoch, the throughput and the final line; TensorBoard and logs', async () => {
    const out = path.join(dir, 'plain');
    const result = await runCli(['--log-level', 'info', 'train', job, '--out', out]);
    expect(result.code).toBe(0);
    const lines = result.stdout.trim().split('\n');
    const epochs = lines.filter((l) => l.startsWith('epoch ') && l.includes('train loss'));
    expect(epochs).toHaveLength(2);
    for (const [i, line] of epochs.entries())
      expect(line).toMatch(
        new RegExp(
          `^epoch ${i + 1}/2 {2}train loss \\d\\.\\d{4} {2}validation loss \\d\\.\\d{4} {2}validation accuracy 0\\.\\d{4} {2}\\d+ samples/s {2}\\d+s$`,
        ),
      );
    // A long epoch (> 30 s on a busy machine) may add step lines; nothing else is printed.
    const other = lines.filter((l) => !epochs.includes(l) && !/^epoch \d\/2 {2}step \d+\/\d+ .* ETA /.test(l));
    expect(other[0]).toBe(`ringtrain: run ${out}`);
    expect(other.at(-2)).toMatch(/^throughput \d+ samples\/s overall, \d+ samples\/s steady \(without the warm-up\)$/);
    expect(other.at(-1)).toMatch(new RegExp(`^ringtrain: completed at step ${STEPS} of ${STEPS}`));
    const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8')) as Record<string, number>;
    expect(summary['steadySamplesPerSecond']).toBeGreaterThan(0);

    // Logs: JSON lines; the workers' prefixed with their rank; the run's id on every line once the run exists.
    const logLines = result.stderr.trim().split('\n');
    const workerLines = logLines.filter((l) => l.startsWith('[rank '));
    expect(workerLines.length).toBeGreaterThan(0);
    const runId = path.basename(out);
    for (const line of logLines) {
      const json = line.replace(/^\[rank (\d+)\] /, '');
      expect(duplicateKeys(json), line).toEqual([]);
      const record = JSON.parse(json) as Record<string, unknown>;
      expect(typeof record['component']).toBe('string');
      const prefix = /^\[rank (\d+)\] /.exec(line);
      if (prefix !== null && record['rank'] !== undefined) expect(record['rank']).toBe(Number(prefix[1]));
      expect(record['runId'], line).toBe(runId);
    }
    expect(workerLines.some((l) => l.includes('"component":"worker"') && l.includes('"generation":1'))).toBe(true);

    // TensorBoard: every record's CRCs check; the scalars are metrics.jsonl's.
    const tbDir = path.join(out, 'tensorboard');
    const files = readdirSync(tbDir);
    expect(files).toHaveLength(1);
    const events = readEventFile(path.join(tbDir, files[0] ?? ''));
    expect(events[0]?.fileVersion).toBe(FILE_VERSION);
    const scalars = new Map<string, Array<[number, number]>>();
    for (const event of events.slice(1))
      for (const value of event.summary?.value ?? [])
        scalars.set(value.tag, [...(scalars.get(value.tag) ?? []), [event.step, value.simpleValue ?? Number.NaN]]);
    const metrics = readMetrics(path.join(out, 'metrics.jsonl'));
    const steps = metrics.filter((r) => r['type'] === 'step');
    expect(steps).toHaveLength(STEPS);
    expect(scalars.get('train/loss')).toEqual(
      steps.map((r) => [Number(r['step']) + 1, Math.fround(Number(r['loss']))]),
    );
    expect(scalars.get('train/learning_rate')).toEqual(steps.map((r) => [Number(r['step']) + 1, Math.fround(0.003)]));
    expect(scalars.get('ring/world_size')).toEqual(steps.map((r) => [Number(r['step']) + 1, 2]));
    for (const rank of [0, 1])
      expect(scalars.get(`ranks/${rank}/compute_ms`)).toEqual(
        steps.map((r) => [
          Number(r['step']) + 1,
          Math.fround(
            (r['ranks'] as Array<{ rank: number; computeMs: number }>).find((x) => x.rank === rank)?.computeMs ?? -1,
          ),
        ]),
      );
    const validations = metrics.filter((r) => r['type'] === 'validation');
    expect(validations).toHaveLength(2);
    for (const metric of ['loss', 'accuracy'])
      expect(scalars.get(`validation/${metric}`)).toEqual(
        validations.map((r) => [Number(r['step']), Math.fround(Number(r[`validation.${metric}`]))]),
      );
  });

  it('--json: one JSON object per event on stdout; --quiet: the final line only', async () => {
    const json = await runCli(['train', job, '--out', path.join(dir, 'json'), '--json']);
    expect(json.code).toBe(0);
    const events = json.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { event: string; [key: string]: unknown });
    expect(events.filter((e) => e.event === 'step')).toHaveLength(STEPS);
    expect(events.filter((e) => e.event === 'epoch').map((e) => e['epoch'])).toEqual([1, 2]);
    expect(events.at(-1)).toMatchObject({ event: 'end', status: 'completed', step: STEPS, plannedSteps: STEPS });
    expect(events.at(-2)?.event).toBe('throughput');

    const quiet = await runCli(['train', job, '--out', path.join(dir, 'quiet'), '--quiet']);
    expect(quiet.code).toBe(0);
    expect(quiet.stdout).toMatch(new RegExp(`^ringtrain: completed at step ${STEPS} of ${STEPS}[^\\n]*\\n$`));
    expect(quiet.stderr).toBe('');
  });

  it('--json | head: a closed stdout stops the run at a step boundary with a checkpoint, exit 141, no internal error', async () => {
    const out = path.join(dir, 'head');
    const child = spawn(process.execPath, [CLI, 'train', job, '--out', out, '--json'], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    let firstLines = '';
    // Like `head -3`: read three lines, then close the pipe.
    child.stdout.on('data', (d: Buffer) => {
      firstLines += d.toString();
      if (firstLines.split('\n').length > 3) child.stdout.destroy();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), RUN_LIMIT_MS);
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    clearTimeout(timer);
    expect(code).toBe(141);
    expect(stderr).not.toMatch(/internal error/);
    expect(stderr.trim().split('\n').at(-1)).toMatch(
      /^ringtrain: stopped by a closed stdout \(SIGPIPE\) after step \d+; checkpointed, continue with: ringtrain train --resume /,
    );
    const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8')) as { status: string };
    expect(summary.status).toBe('preempted');
  });

  it('--quiet with --json is a flag error (exit 2), before anything starts', async () => {
    const result = await runCli(['train', job, '--out', path.join(dir, 'both'), '--quiet', '--json']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^ringtrain: --quiet: conflicts with --json; give one of them\n$/);
    expect(result.stdout).toBe('');
  });

  const hasScript = spawnSync('script', ['--version']).status === 0;
  it.skipIf(!hasScript)('on a TTY: a live bar with loss, samples/s and ETA, then one line per epoch', () => {
    const out = path.join(dir, 'tty');
    const command = [process.execPath, CLI, 'train', job, '--out', out].map((a) => `'${a}'`).join(' ');
    const result = spawnSync('script', ['-qfec', command, '/dev/null'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      timeout: RUN_LIMIT_MS,
    });
    expect(result.status).toBe(0);
    // eslint-disable-next-line no-control-regex
    const text = result.stdout.replace(/\u001b\[[0-9;?]*[A-Za-z]|\u001b[78]|\r/g, '');
    expect(text).toMatch(/epoch 1\/2 \S+ \d+\/23 \| loss \d\.\d{4} \| \d+ samples\/s \| ETA \d+s/);
    expect(text).toMatch(/epoch 2\/2 {2}train loss \d\.\d{4} {2}validation loss/);
    expect(text).toMatch(/ringtrain: completed at step 46 of 46/);
  });
});
