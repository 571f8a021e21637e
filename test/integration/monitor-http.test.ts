// `--http`: Prometheus /metrics scraped during a real run (2 worker processes) and compared with
// what metrics.jsonl holds; the live dashboard in a real headless Chromium (Debian's, driven by
// playwright-core) during a run with one rank slowed by RINGTRAIN_FAULT_SLOW_RANK; and
// `ringtrain report` over the first run. Runs go on until the test has seen what it needs and
// stops them with SIGTERM (a checkpoint and exit 143), so nothing depends on how fast they are.
// The dashboard's screenshot is kept in test-output/dashboard.png (ignored by git).
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { chromium, type Page } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { readMetrics } from '../../coordinator/run/run-directory.js';
import type { StepRecord } from '../../coordinator/monitor/run-telemetry.js';
import { REPO_ROOT, runCli, smallMnistJob, tempDir, writeJob } from '../helpers/cli.js';
import { parseExposition } from '../helpers/prometheus-text.js';
import { startCli, waitForSteps, type CliExit } from '../helpers/run-watch.js';
import { slowdownMs } from '../helpers/slowdown.js';
import { pointsIn } from '../helpers/svg-elements.js';

const CHROMIUM = process.env['RINGTRAIN_CHROMIUM'] ?? '/usr/bin/chromium';
const SCREENSHOT = path.join(REPO_ROOT, 'test-output', 'dashboard.png');
/** 784·32 + 32 + 32·10 + 10: the flat gradient every step all-reduces. */
const PARAMS = 25_450;

/** A job long enough that the test, not the job, ends it. */
function longJob(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return smallMnistJob({
    data: { format: 'mnist', limit: 600, split: { validation: 0.1, test: 0.1 } },
    training: { epochs: 500, batchSize: 32 },
    validation: { everySteps: 4 },
    checkpoint: { everySteps: 0, keep: 1 },
    ...overrides,
  });
}

/** Waits (bounded, only to catch a hang) for <out>/coordinator.json to name the HTTP address. */
async function httpBase(out: string): Promise<string> {
  const file = path.join(out, 'coordinator.json');
  for (let i = 0; i < 3000; i++) {
    if (existsSync(file)) {
      const { http } = JSON.parse(readFileSync(file, 'utf8')) as { http?: { host: string; port: number } };
      if (http !== undefined) return `http://${http.host}:${http.port}`;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${file} names no http address`);
}

async function stop(run: {
  child: { kill: (s: NodeJS.Signals) => boolean };
  done: Promise<CliExit>;
}): Promise<CliExit> {
  run.child.kill('SIGTERM');
  return await run.done;
}

/** Polls `probe` in the page (bounded, 10 minutes, only to catch a hang) until it returns true. */
async function waitInPage(page: Page, probe: string): Promise<void> {
  await page.waitForFunction(probe, undefined, { timeout: 600_000, polling: 200 });
}

describe('ringtrain train --http', () => {
  const dir = tempDir();
  const firstRun = path.join(dir, 'first');
  const running: Array<ReturnType<typeof startCli>> = [];
  afterAll(async () => {
    for (const run of running) if (run.child.exitCode === null) await stop(run);
  });

  it('serves /metrics during the run, in the exposition format, agreeing with metrics.jsonl', async () => {
    const job = writeJob(dir, longJob());
    const run = startCli(['train', job, '--out', firstRun, '--http', '0']);
    running.push(run);
    const base = await httpBase(firstRun);
    expect(new URL(base).hostname).toBe('127.0.0.1'); // a bare port binds loopback
    await waitForSteps(firstRun, 9);
    const response = await fetch(`${base}/metrics`);
    expect(response.headers.get('content-type')).toContain('text/plain');
    const scraped = parseExposition(await response.text());
    const records = readMetrics(path.join(firstRun, 'metrics.jsonl'));

    const done = scraped.value('ringtrain_step');
    const steps = records.filter((r) => r['type'] === 'step' && Number(r['step']) < done) as unknown as StepRecord[];
    const last = steps.at(-1);
    expect(last?.step).toBe(done - 1);
    expect(scraped.value('ringtrain_steps_total')).toBe(steps.length);
    expect(scraped.value('ringtrain_train_loss')).toBe(last?.loss);
    expect(scraped.value('ringtrain_step_duration_seconds_count')).toBe(steps.length);
    expect(scraped.value('ringtrain_step_duration_seconds_sum')).toBeCloseTo(sum(steps.map((s) => s.wallMs)) / 1000, 6);
    expect(scraped.value('ringtrain_skipped_steps_total')).toBe(steps.filter((s) => s.skipped).length);
    expect(scraped.value('ringtrain_allreduce_bytes_total')).toBe(steps.length * PARAMS * 4);
    expect(scraped.value('ringtrain_allreduce_bus_bandwidth_bytes_per_second')).toBeGreaterThan(0);
    expect(scraped.value('ringtrain_samples_per_second')).toBeCloseTo(
      (last?.samples ?? 0) / ((last?.wallMs ?? 0) / 1000),
      6,
    );
    expect(scraped.value('ringtrain_world_size')).toBe(2);
    expect(scraped.value('ringtrain_generation')).toBeGreaterThanOrEqual(1);
    expect(scraped.value('ringtrain_recoveries_total')).toBe(0);
    for (const rank of [0, 1]) {
      const mine = steps.map((s) => s.ranks.find((r) => r.rank === rank));
      const label = { rank: String(rank) };
      expect(scraped.value('ringtrain_rank_compute_seconds', label)).toBe((mine.at(-1)?.computeMs ?? 0) / 1000);
      expect(scraped.value('ringtrain_rank_allreduce_wait_seconds', label)).toBe(
        (mine.at(-1)?.allreduceWaitMs ?? 0) / 1000,
      );
      expect(scraped.value('ringtrain_rank_compute_seconds_total', label)).toBeCloseTo(
        sum(mine.map((r) => r?.computeMs ?? 0)) / 1000,
        6,
      );
    }
    // The validation at step `done` may have come in after the scrape: the gauge is that one's or the one before.
    const validations = records.filter((r) => r['type'] === 'validation' && Number(r['step']) <= done).slice(-2);
    expect(validations.length).toBeGreaterThan(0);
    expect(validations.map((v) => v['validation.loss'])).toContain(
      scraped.value('ringtrain_validation_metric', { metric: 'loss' }),
    );
    expect(validations.map((v) => v['validation.accuracy'])).toContain(
      scraped.value('ringtrain_validation_metric', { metric: 'accuracy' }),
    );
    for (const sample of scraped.samples) expect(sample.name).toMatch(/^ringtrain_/);

    const exit = await stop(run);
    expect(exit.code, exit.stderr).toBe(143);
    expect(exit.stdout).toContain(`dashboard ${base}/`);
  });

  it.skipIf(!existsSync(CHROMIUM))(
    'shows a live dashboard in Chromium: curves grow, the slowed rank is marked, no console errors',
    async () => {
      // Rank 1 computes longer each step by a multiple of the compute times the first run measured
      // on this machine as busy as it is now (test/helpers/slowdown.ts).
      const slowMs = slowdownMs(path.join(firstRun, 'metrics.jsonl'));
      const out = path.join(dir, 'slow');
      // The address comes from the job file this time (http: 0).
      const job = writeJob(dir, longJob({ http: 0, stragglers: { margin: 0.5, patienceSteps: 3 } }), 'slow.yaml');
      const run = startCli(['train', job, '--out', out], { RINGTRAIN_FAULT_SLOW_RANK: `1:${slowMs}` });
      running.push(run);
      const base = await httpBase(out);
      await waitForSteps(out, 2);
      const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
      const problems: string[] = [];
      try {
        const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
        page.on('console', (message) => {
          if (message.type() === 'error' || message.type() === 'warning') problems.push(message.text());
        });
        page.on('pageerror', (error) => problems.push(error.message));
        await page.goto(`${base}/`);
        const points = "Chart.getChart('loss').data.datasets[0].data.length";
        await waitInPage(page, `${points} > 0`);
        const before = await page.evaluate<number>(points);
        // Steps keep completing: the curve gains points without reloading the page.
        await waitInPage(page, `${points} > ${before}`);
        await waitInPage(page, "Chart.getChart('loss').data.datasets[1].data.length > 0"); // a validation
        // The slowed rank is marked as the straggler, and the rank waiting on it as waiting.
        await waitInPage(page, `document.querySelector('#rank-1')?.dataset.straggler === 'true'`);
        expect(await page.getAttribute('#rank-0', 'data-straggler')).toBe('false');
        expect(await page.getAttribute('#rank-0', 'data-waiting')).toBe('true');
        expect(await page.textContent('#rank-1 .badge')).toBe('straggler');
        // The detector's straggler event reaches the event list.
        await waitInPage(
          page,
          `[...document.querySelectorAll('#events td')].some((td) => td.textContent === 'straggler')`,
        );
        mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
        await page.screenshot({ path: SCREENSHOT, fullPage: true });
      } finally {
        await browser.close();
      }
      expect(problems).toEqual([]);
      expect(existsSync(SCREENSHOT)).toBe(true);
      expect((await stop(run)).code).toBe(143);
    },
  );

  it('ringtrain report draws the first run: one point per step and per validation, in parseable SVG', async () => {
    const result = await runCli(['report', firstRun]);
    expect(result.code, result.stderr).toBe(0);
    const out = path.join(firstRun, 'report'); // the default for one run
    const records = readMetrics(path.join(firstRun, 'metrics.jsonl'));
    const steps = new Set(records.filter((r) => r['type'] === 'step' && r['skipped'] !== true).map((r) => r['step']));
    const validations = new Set(records.filter((r) => r['type'] === 'validation').map((r) => r['step']));
    expect(validations.size).toBeGreaterThan(0);
    const svg = (name: string): string => readFileSync(path.join(out, `${name}.svg`), 'utf8');
    expect(pointsIn(svg('loss'))).toHaveLength(steps.size + validations.size);
    expect(pointsIn(svg('validation-accuracy'))).toHaveLength(validations.size);
    expect(readFileSync(path.join(out, 'index.html'), 'utf8')).toContain('<img src="loss.svg"');
  });

  it('ringtrain report overlays both runs and lists where their jobs differ', async () => {
    const out = path.join(dir, 'overlay');
    const slowRun = path.join(dir, 'slow');
    const result = await runCli(['report', firstRun, slowRun, '--out', out]);
    expect(result.code, result.stderr).toBe(0);
    const html = readFileSync(path.join(out, 'index.html'), 'utf8');
    // The second job names http: and a shorter straggler patience; nothing else differs.
    expect(html).toContain('<td>stragglers.patienceSteps</td><td>20</td><td>3</td>');
    expect(html).toContain('<td>http</td>');
    expect(html).not.toContain('<td>optimizer.learningRate</td>');
    const points = pointsIn(readFileSync(path.join(out, 'loss.svg'), 'utf8'));
    for (const label of ['first', 'slow'])
      expect(points.some((p) => p.attributes['aria-label']?.includes(`run: ${label}`))).toBe(true);
  });
});

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}
