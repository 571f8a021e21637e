// The report's charts as Vega-Lite specs (pure: data in, spec out) and their SVG, rendered by
// Vega in Node with no canvas and no browser (`renderer: 'none'`, then toSVG()).
//
// Runs: train loss (one point per step) with validation loss, and one chart per validation
// metric, several runs overlaid by colour. Bench train: samples/s against workers (ringtrain, and
// the bare gradient loop and PyTorch DDP where measured), the model.fit baseline as a rule, and
// ringtrain's scaling efficiency. Bench allreduce: bus bandwidth against message size
// (log scale), with the same run's TCP baselines as rules, as nccl-tests compares busbw with the link.
import * as vega from 'vega';
import * as vl from 'vega-lite';
import type { TopLevelSpec } from 'vega-lite';
import type { AllreduceRow } from '../bench/allreduce-rows.js';
import type { TrainRow } from '../bench/train-bench.js';
import type { RunInput } from './report-inputs.js';

export interface Chart {
  /** File name, without .svg. */
  name: string;
  title: string;
  /** A Vega-Lite spec without its title (renderSvg adds it). */
  spec: Record<string, unknown>;
}

type Layer = Record<string, unknown>;

const SIZE = { width: 520, height: 280 };

export function runCharts(runs: readonly RunInput[]): Chart[] {
  const lossValues = runs.flatMap((run) => [
    ...run.train.map((p) => ({ run: run.label, split: 'train', step: p.step, loss: p.loss })),
    ...run.validation
      .filter((v) => v.metrics['loss'] !== undefined)
      .map((v) => ({ run: run.label, split: 'validation', step: v.step, loss: v.metrics['loss'] })),
  ]);
  const charts: Chart[] = [
    {
      name: 'loss',
      title: 'Loss',
      spec: {
        ...SIZE,
        data: { values: lossValues },
        mark: { type: 'line', point: { size: 12 }, strokeWidth: 1.2 },
        encoding: {
          x: { field: 'step', type: 'quantitative', title: 'step' },
          y: { field: 'loss', type: 'quantitative', title: 'loss' },
          color: { field: 'run', type: 'nominal', title: 'run' },
          strokeDash: { field: 'split', type: 'nominal', title: 'split' },
          shape: { field: 'split', type: 'nominal', title: 'split' },
        },
      },
    },
  ];
  const names = [...new Set(runs.flatMap((run) => run.validation.flatMap((v) => Object.keys(v.metrics))))].filter(
    (name) => name !== 'loss',
  );
  for (const name of names)
    charts.push({
      name: `validation-${name.replace(/[^a-zA-Z0-9_-]/g, '_')}`,
      title: `Validation ${name}`,
      spec: {
        ...SIZE,
        data: {
          values: runs.flatMap((run) =>
            run.validation
              .filter((v) => v.metrics[name] !== undefined)
              .map((v) => ({ run: run.label, step: v.step, value: v.metrics[name] })),
          ),
        },
        mark: { type: 'line', point: true },
        encoding: {
          x: { field: 'step', type: 'quantitative', title: 'step' },
          y: { field: 'value', type: 'quantitative', title: name, scale: { zero: false } },
          color: { field: 'run', type: 'nominal', title: 'run' },
        },
      },
    });
  return charts;
}

export function trainBenchCharts(label: string, rows: readonly TrainRow[]): Chart[] {
  const ring = rows.filter((r) => r.kind === 'ringtrain');
  const baseline = rows.find((r) => r.kind === 'model.fit');
  // One line per kind measured at each world size: ringtrain, the bare gradient loop (its compute
  // ceiling) and a peer (PyTorch DDP) when the bench ran them; model.fit is one process, a rule.
  const series = rows.filter((r) => r.kind !== 'model.fit' && r.kind !== 'fit+kernels');
  const throughput: Layer = {
    data: { values: series.map((r) => ({ workers: r.workers, samplesPerSecond: r.samplesPerSecond, kind: r.kind })) },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'workers', type: 'quantitative', title: 'workers', axis: { tickMinStep: 1 } },
      y: { field: 'samplesPerSecond', type: 'quantitative', title: 'samples/s' },
      color: { field: 'kind', type: 'nominal', title: 'measured' },
    },
  };
  const rule = baseline === undefined ? [] : [baselineRule(baseline.samplesPerSecond, `model.fit (1 process)`)];
  const efficiency = ring.filter((r) => Number.isFinite(r.efficiency));
  return [
    {
      name: `${label}-throughput`,
      title: `${label}: throughput against workers`,
      spec: { ...SIZE, layer: [throughput, ...rule] },
    },
    {
      name: `${label}-efficiency`,
      title: `${label}: scaling efficiency (speed-up ÷ workers, against 1 worker)`,
      spec: {
        ...SIZE,
        layer: [
          {
            data: { values: efficiency.map((r) => ({ workers: r.workers, efficiency: r.efficiency })) },
            mark: { type: 'line', point: true },
            encoding: {
              x: { field: 'workers', type: 'quantitative', title: 'workers', axis: { tickMinStep: 1 } },
              y: { field: 'efficiency', type: 'quantitative', title: 'efficiency', axis: { format: '%' } },
            },
          },
          baselineRule(1, 'ideal'),
        ],
      },
    },
  ];
}

export function allreduceBenchCharts(label: string, rows: readonly AllreduceRow[]): Chart[] {
  const first = rows[0];
  const rules =
    first === undefined
      ? []
      : [
          baselineRule(first.tcpGBps, 'raw TCP, one direction'),
          baselineRule(first.tcpBidirGBps, 'raw TCP, both directions (per direction)'),
        ];
  return [
    {
      name: `${label}-busbw`,
      title: `${label}: bus bandwidth against message size`,
      spec: {
        ...SIZE,
        layer: [
          {
            data: { values: bestPoints(rows) },
            mark: { type: 'line', point: true },
            encoding: {
              x: { field: 'bytes', type: 'quantitative', title: 'message size (bytes)', scale: { type: 'log' } },
              y: { field: 'busbwGBps', type: 'quantitative', title: 'busbw (GB/s)' },
              color: { field: 'series', type: 'nominal', title: 'all-reduce' },
            },
          },
          ...rules,
        ],
      },
    },
  ];
}

/**
 * One point per series and size: where one series was measured twice at a size (gloo pinned to
 * one thread and at torch's default, which is one thread on a 2-core machine), the better, as the
 * table's `vs gloo` column takes it; otherwise the line would zigzag between the two runs.
 */
function bestPoints(rows: readonly AllreduceRow[]): Array<{ bytes: number; busbwGBps: number; series: string }> {
  const best = new Map<string, { bytes: number; busbwGBps: number; series: string }>();
  for (const r of rows) {
    const point = { bytes: r.bytes, busbwGBps: r.busbwGBps, series: seriesOf(r) };
    const key = `${point.series}\u0000${point.bytes}`;
    const seen = best.get(key);
    if (seen === undefined || point.busbwGBps > seen.busbwGBps) best.set(key, point);
  }
  return [...best.values()];
}

/** ringtrain rows (and older files without `kind`) by N and compression; gloo rows by N and threads; links named. */
function seriesOf(r: AllreduceRow): string {
  const who = r.kind === 'gloo' ? `gloo (${r.threads ?? '?'} thr)` : `ringtrain ${r.compression}`;
  return `${who}, ${r.workers} workers${r.link !== undefined ? `, link ${r.link}` : ''}`;
}

/** A horizontal rule at `value`, labelled: a baseline measured in the same run. */
function baselineRule(value: number, text: string): Layer {
  return {
    data: { values: [{ value, text }] },
    layer: [
      {
        mark: { type: 'rule', strokeDash: [4, 4], color: 'gray' },
        encoding: { y: { field: 'value', type: 'quantitative' } },
      },
      {
        mark: { type: 'text', align: 'right', dy: -6, x: 'width', color: 'gray' },
        encoding: { y: { field: 'value', type: 'quantitative' }, text: { field: 'text' } },
      },
    ],
  };
}

/** The chart as an SVG document. */
export async function renderSvg(chart: Chart): Promise<string> {
  const compiled = vl.compile({ ...chart.spec, title: chart.title } as TopLevelSpec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
