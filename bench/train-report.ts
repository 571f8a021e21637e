// What `ringtrain bench train` prints: the throughput table, the per-rank step split, and the
// issue's targets with their measured values (printed, never asserted).
import type { RankSplit } from './step-timings.js';
import { fixed, formatTable, percent, type Column } from './bench-table.js';
import type { TrainBenchContext, TrainBenchOptions, TrainRow } from './train-bench.js';

const MIB = 1024 * 1024;

const RUN_COLUMNS: ReadonlyArray<Column<TrainRow>> = [
  { title: 'run', width: 15, value: (r) => r.kind },
  { title: 'workers', width: 7, value: (r) => String(r.workers) },
  { title: 'samples/s', width: 10, value: (r) => fixed(r.samplesPerSecond, 1) },
  { title: 'step(ms)', width: 8, value: (r) => fixed(r.meanStepMs, 2) },
  { title: 'speedup', width: 7, value: (r) => (r.kind === 'ringtrain' ? fixed(r.speedup, 2) : '-') },
  { title: 'of ceiling', width: 10, value: (r) => (r.kind === 'ringtrain' ? percent(r.ofCeiling) : '-') },
  {
    title: 'of +write',
    width: 9,
    value: (r) => (r.kind === 'ringtrain' && r.ofWriteCeiling !== undefined ? percent(r.ofWriteCeiling) : '-'),
  },
  { title: 'efficiency', width: 10, value: (r) => (r.kind === 'ringtrain' ? percent(r.efficiency) : '-') },
  { title: 'non-compute', width: 11, value: (r) => percent(r.nonComputeFraction) },
  {
    title: 'peak RSS/worker(MiB)',
    width: 20,
    value: (r) => (r.peakRssBytes.length === 0 ? '-' : r.peakRssBytes.map((b) => fixed(b / MIB, 0)).join('/')),
  },
  { title: 'final loss', width: 10, value: (r) => fixed(r.finalLoss, 4) },
  { title: 'verified', width: 8, value: (r) => (r.verified ? 'ok' : 'NO') },
];

type SplitLine = RankSplit & { workers: number };
const ms = (value: number): string => fixed(value, 2);
const share =
  (part: (s: SplitLine) => number) =>
  (s: SplitLine): string =>
    percent(part(s) / (s.computeMs + s.allreduceMs + s.optimizerMs + s.idleMs));

const SPLIT_COLUMNS: ReadonlyArray<Column<SplitLine>> = [
  { title: 'workers', width: 7, value: (s) => String(s.workers) },
  { title: 'rank', width: 4, value: (s) => String(s.rank) },
  { title: 'compute', width: 8, value: (s) => ms(s.computeMs) },
  { title: 'allreduce', width: 9, value: (s) => ms(s.allreduceMs) },
  { title: 'wait', width: 7, value: (s) => ms(s.allreduceWaitMs) },
  { title: 'optimizer', width: 9, value: (s) => ms(s.optimizerMs) },
  { title: 'idle', width: 7, value: (s) => ms(s.idleMs) },
  { title: 'compute%', width: 8, value: share((s) => s.computeMs) },
  { title: 'allreduce%', width: 10, value: share((s) => s.allreduceMs) },
  { title: 'optimizer%', width: 10, value: share((s) => s.optimizerMs) },
  { title: 'idle%', width: 6, value: share((s) => s.idleMs) },
];

export function printTrainReport(context: TrainBenchContext, options: TrainBenchOptions): void {
  const { job, paramCount, rows, runtimeRssBytes } = context;
  const { write } = options;
  write(
    `# ringtrain bench train: job ${job.name}, ${paramCount.toLocaleString('en-US')} parameters, global batch ${job.training.batchSize}, backend ${job.backend}, compression ${job.allreduce.compression}`,
  );
  write(
    `# ${options.warmupSteps} warm-up + ${options.steps} measured steps per run; samples/s = measured samples / summed coordinator step wall time`,
  );
  write(`# runtime baseline RSS (node + tfjs + backend + dataset, no model): ${fixed(runtimeRssBytes / MIB, 1)} MiB`);
  write(
    '# bare-grad: N processes at once doing only the gradient of their slice (same model, kernels, backend); global batch / slowest mean time = the compute ceiling; "of ceiling" = ringtrain / bare-grad at the same N',
  );
  write(
    '# bare-grad+write: the same, writing the weights back before every gradient as a training step must (wasm re-packs written weights); "of +write" = ringtrain / bare-grad+write',
  );
  if (rows.some((r) => r.kind === 'pytorch-ddp'))
    write(
      `# pytorch-ddp: PyTorch DistributedDataParallel over gloo, same model, samples, global batch and optimizer, ${rows.find((r) => r.kind === 'pytorch-ddp')?.threads ?? '?'} thread(s) per rank at N=${rows.find((r) => r.kind === 'pytorch-ddp')?.workers ?? '?'} (cores / N); a peer's figures, never asserted`,
    );
  write('#');
  write(formatTable(RUN_COLUMNS, rows));
  write('#');
  write('# per-rank split of step time (mean ms per measured step)');
  write(
    '# wait: the part of allreduce spent waiting for the left neighbour to start it (skew); the rest is communication',
  );
  write(
    formatTable(
      SPLIT_COLUMNS,
      rows.flatMap((r) => r.ranks.map((split) => ({ ...split, workers: r.workers }))),
    ),
  );
  write('#');
  for (const line of targetLines(context)) write(`# ${line}`);
}

function targetLines({ rows, paramCount, runtimeRssBytes }: TrainBenchContext): string[] {
  const ring = (n: number): TrainRow | undefined => rows.find((r) => r.kind === 'ringtrain' && r.workers === n);
  const fit = rows.find((r) => r.kind === 'model.fit');
  const verdict = (ok: boolean): string => (ok ? 'met' : 'NOT met');
  const lines = ['targets (printed, not asserted):'];
  const one = ring(1);
  const bare = (n: number): TrainRow | undefined => rows.find((r) => r.kind === 'bare-grad' && r.workers === n);
  const peer = (n: number): TrainRow | undefined => rows.find((r) => r.kind === 'pytorch-ddp' && r.workers === n);
  const twoRing = ring(2);
  if (one !== undefined && twoRing !== undefined) {
    const ratio = twoRing.samplesPerSecond / one.samplesPerSecond;
    lines.push(`  N=2 / N=1 samples/s = ${fixed(ratio, 2)} (target >= 1.8): ${verdict(ratio >= 1.8)}`);
  }
  const twoPeer = peer(2);
  if (twoRing !== undefined && twoPeer !== undefined) {
    const ratio = twoRing.samplesPerSecond / twoPeer.samplesPerSecond;
    lines.push(`  N=2 samples/s / PyTorch DDP N=2 = ${fixed(ratio, 2)} (target >= 0.6): ${verdict(ratio >= 0.6)}`);
  }
  const oneBare = bare(1);
  if (one !== undefined && oneBare !== undefined) {
    const ratio = one.samplesPerSecond / oneBare.samplesPerSecond;
    lines.push(`  N=1 samples/s / bare gradient loop = ${fixed(ratio, 2)} (target >= 0.85): ${verdict(ratio >= 0.85)}`);
    const oneWrite = rows.find((r) => r.kind === 'bare-grad+write' && r.workers === 1);
    if (oneWrite !== undefined)
      lines.push(
        `    (against the bare loop that also writes the weights each step: ${fixed(one.samplesPerSecond / oneWrite.samplesPerSecond, 2)})`,
      );
  }
  if (one !== undefined && fit !== undefined) {
    const ratio = one.samplesPerSecond / fit.samplesPerSecond;
    lines.push(`  ringtrain N=1 / model.fit samples/s = ${fixed(ratio, 2)} (target >= 1.2): ${verdict(ratio >= 1.2)}`);
    const withKernels = rows.find((r) => r.kind === 'fit+kernels');
    if (withKernels !== undefined) {
      lines.push(
        `    (against model.fit given ringtrain's wasm kernels too: ${fixed(one.samplesPerSecond / withKernels.samplesPerSecond, 2)})`,
      );
    }
  }
  const two = ring(2);
  if (two !== undefined) {
    lines.push(
      `  N=2 non-compute share of step time = ${percent(two.nonComputeFraction)} (target <= 15%): ${verdict(two.nonComputeFraction <= 0.15)}`,
    );
  }
  const limit = runtimeRssBytes + 4 * 4 * paramCount;
  for (const row of rows.filter((r) => r.kind === 'ringtrain' && r.peakRssBytes.length > 0)) {
    const peak = Math.max(...row.peakRssBytes);
    lines.push(
      `  N=${row.workers} peak worker RSS ${fixed(peak / MIB, 1)} MiB (target <= runtime ${fixed(runtimeRssBytes / MIB, 1)} + 4 x params ${fixed((16 * paramCount) / MIB, 1)} = ${fixed(limit / MIB, 1)} MiB): ${verdict(peak <= limit)}`,
    );
  }
  return lines;
}
