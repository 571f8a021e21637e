// `ringtrain bench allreduce`: N real rank processes (on 127.0.0.1, or each in its own network
// namespace behind an emulated link with --link, link-lab.ts), each with the data port and
// communicator a worker uses, all-reduce buffers of the given sizes, for each world size asked;
// with --peer gloo, PyTorch's gloo does the same sizes first (gloo-peer.ts). The table follows
// nccl-tests (algbw = bytes/time, busbw = algbw·2(N−1)/N) and divides busbw by the same run's
// raw TCP bandwidth: one-way and bidirectional (both processes sending and receiving at once, the
// traffic of an N = 2 ring), or by the link's rate. Rows and columns: allreduce-rows.ts. Every
// reduced value is checked on every rank and the ranks' results must be bit-identical; any
// failure makes the command fail after printing what it measured.
import { writeFile } from 'node:fs/promises';
import { describeError, RingtrainError } from '../shared/errors.js';
import type { WireCodec } from '../worker/collectives/wire-compression.js';
import { iterationsFor, type SizeResult } from './allreduce-rank.js';
import { aggregate, asSizeResult, columns, glooRow, type AllreduceRow, type Baselines } from './allreduce-rows.js';
import { BenchChild } from './bench-child.js';
import { LOOPBACK_PLACEMENT, runGlooPeer, type GlooPlacement } from './gloo-peer.js';
import { labUnavailable, LinkLab, type LinkSpec } from './link-lab.js';
import { findTorchPython, freePort } from './pytorch-peer.js';
import { headerLine, rowLine } from './bench-table.js';
import { measureTcpBaseline } from './tcp-baseline.js';
import { formatBytes } from './units.js';

const START_TIMEOUT_MS = 60_000;
/** Bound on one size's warm-up + timed iterations on every rank. */
const SIZE_TIMEOUT_MS = 600_000;

export interface AllreduceBenchOptions {
  /** World sizes to measure, in order. */
  workers: number[];
  sizes: number[];
  compression: WireCodec;
  warmup: number;
  iters: number;
  chunkBytes: number;
  collectiveTimeoutMs: number;
  /** Bytes per TCP baseline run, and how many runs (best is kept). */
  tcpBytes: number;
  tcpRuns: number;
  /** Also measure gloo (PyTorch) on the same sizes, 1 thread per rank and torch's default. */
  peer?: 'gloo';
  /** Each rank in its own network namespace behind a link shaped to this (link-lab.ts). */
  link?: LinkSpec;
  json?: string;
  write: (line: string) => void;
}

export async function runAllreduceBench(options: AllreduceBenchOptions): Promise<AllreduceRow[]> {
  const { write, link } = options;
  write(
    `# ringtrain bench allreduce: ${options.workers.join(', ')} worker processes, compression ${options.compression}, chunk ${formatBytes(options.chunkBytes)}`,
  );
  write(
    `# ${options.warmup} warm-up + ${options.iters} timed iterations per size (fewer above 16 MiB, at least 1 + 3); time = median over iterations of the slowest rank`,
  );
  if (link !== undefined) {
    const why = labUnavailable();
    if (why !== undefined) {
      write(`# skipped: --link places each rank in its own network namespace, and ${why}`);
      return [];
    }
  }
  const baselines = await measureBaselines(options);
  const python = options.peer === 'gloo' ? await findTorchPython() : undefined;
  if (options.peer === 'gloo' && python === undefined)
    write('# gloo peer skipped: no Python with torch and gloo (set RINGTRAIN_PYTHON, or install python3-torch)');
  const rows: AllreduceRow[] = [];
  for (const workers of options.workers) {
    const lab = link === undefined ? undefined : LinkLab.create(link, workers);
    try {
      if (lab !== undefined) describeLab(lab, write);
      rows.push(...(await measureWorld(options, workers, baselines, python, lab)));
    } finally {
      lab?.close();
    }
    const left = lab === undefined ? [] : [...lab.leftovers(), ...lab.links()];
    if (left.length > 0) throw new RingtrainError(`--link: namespaces or links left behind: ${left.join(', ')}`);
  }
  if (options.json !== undefined) await writeFile(options.json, `${JSON.stringify(rows, null, 2)}\n`);
  const name = (r: AllreduceRow): string => `${formatBytes(r.bytes)} N=${r.workers}`;
  // A peer's wrong sum is reported, not ringtrain's failure.
  const peerWrong = rows.filter((row) => row.kind === 'gloo' && !row.verified);
  if (peerWrong.length > 0) write(`# gloo gave wrong sums for ${peerWrong.map(name).join(', ')}`);
  const wrong = rows.filter((row) => row.kind !== 'gloo' && !row.verified);
  if (wrong.length > 0)
    throw new RingtrainError(`all-reduce produced wrong or diverging values for ${wrong.map(name).join(', ')}`);
  return rows;
}

async function measureBaselines(options: AllreduceBenchOptions): Promise<Baselines> {
  const { write } = options;
  const tcp = await measureTcpBaseline(options.tcpBytes, options.tcpRuns);
  write(
    `# TCP baseline (one loopback socket between two processes, best of ${tcp.runs.length} × ${formatBytes(tcp.bytesPerRun)}): ${tcp.gigabytesPerSecond.toFixed(3)} GB/s`,
  );
  const bidir = await measureTcpBaseline(options.tcpBytes, options.tcpRuns, true);
  write(
    `# bidirectional TCP (both processes sending and receiving at once, as in an N = 2 ring; per direction, best of ${bidir.runs.length}): ${bidir.gigabytesPerSecond.toFixed(3)} GB/s`,
  );
  return { tcpGBps: tcp.gigabytesPerSecond, tcpBidirGBps: bidir.gigabytesPerSecond };
}

function describeLab(lab: LinkLab, write: (line: string) => void): void {
  const { link } = lab;
  const delay =
    link.delayUs === undefined
      ? 'no added delay'
      : lab.delayEmulated
        ? `${link.delayUs} us added each way (netem)`
        : `delay ${link.delayUs} us NOT emulated: this kernel has no sch_netem`;
  write(
    `# link: ${lab.ranks.length} network namespaces on one bridge, each port shaped to ${(link.rateBitsPerSecond / 1e9).toFixed(3)} Gbit/s each way (tc tbf), ${delay}`,
  );
}

/** One world size: gloo first (both thread settings) when asked, then ringtrain, printed as one table. */
async function measureWorld(
  options: AllreduceBenchOptions,
  workers: number,
  baselines: Baselines,
  python: string | undefined,
  lab: LinkLab | undefined,
): Promise<AllreduceRow[]> {
  const { write } = options;
  const gloo = python === undefined ? undefined : await measureGloo(python, options, workers, baselines, lab);
  write('#');
  const table = columns(python !== undefined, lab !== undefined);
  write(headerLine(table));
  const rows: AllreduceRow[] = [...(gloo?.oneThread ?? []), ...(gloo?.byDefault ?? [])];
  await measureRing(options, workers, lab, (bytes, results) => {
    const row = aggregate(bytes, results, workers, options, baselines);
    const glooOneThread = gloo?.oneThread.find((g) => g.bytes === bytes);
    const glooDefault = gloo?.byDefault.find((g) => g.bytes === bytes);
    const peers = [glooOneThread, glooDefault].filter((g): g is AllreduceRow => g !== undefined);
    if (peers.length > 0) row.vsGloo = row.busbwGBps / Math.max(...peers.map((g) => g.busbwGBps));
    rows.push(row);
    write(
      rowLine(table, { ...row, ...(glooOneThread ? { glooOneThread } : {}), ...(glooDefault ? { glooDefault } : {}) }),
    );
  });
  return rows;
}

async function measureGloo(
  python: string,
  options: AllreduceBenchOptions,
  workers: number,
  baselines: Baselines,
  lab: LinkLab | undefined,
): Promise<{ oneThread: AllreduceRow[]; byDefault: AllreduceRow[] }> {
  const sizes = options.sizes.map((bytes) => ({
    bytes,
    warmup: iterationsFor(bytes, options.warmup, 1),
    iters: iterationsFor(bytes, options.iters, 3),
  }));
  const placement: GlooPlacement =
    lab === undefined
      ? LOOPBACK_PLACEMENT
      : {
          prefix: (rank) => lab.prefix(rank),
          masterAddress: lab.ranks[0]!.address,
          ifname: (rank) => lab.ranks[rank]!.ifname,
        };
  const measured = { oneThread: [] as AllreduceRow[], byDefault: [] as AllreduceRow[] };
  // One intra-op thread per rank, then torch's default.
  for (const [threads, into] of [
    [1, measured.oneThread],
    [0, measured.byDefault],
  ] as const) {
    try {
      const run = await runGlooPeer(python, workers, sizes, threads, await freePort(), placement);
      if (threads === 1) options.write(`# gloo peer: PyTorch ${run.version}, one process per rank`);
      for (const result of run.results) into.push(glooRow(result, workers, run.threads, options, baselines));
    } catch (error) {
      options.write(`# gloo peer (${threads === 0 ? 'default' : threads} threads) failed: ${describeError(error)}`);
    }
  }
  return measured;
}

/** Starts the ranks (in their namespaces under --link), then hands each size's results to `onSize`. */
async function measureRing(
  options: AllreduceBenchOptions,
  workers: number,
  lab: LinkLab | undefined,
  onSize: (bytes: number, results: SizeResult[]) => void,
): Promise<void> {
  const ranks = Array.from({ length: workers }, (_, rank) =>
    BenchChild.spawn(`rank ${rank}`, rankArgs(options, workers, rank, lab), lab?.prefix(rank) ?? []),
  );
  try {
    const listening = await Promise.all(ranks.map((child) => child.next('listening', START_TIMEOUT_MS)));
    const peers = listening.map(
      (message, rank) => `${lab?.ranks[rank]?.address ?? '127.0.0.1'}:${Number(message['port'])}`,
    );
    for (const child of ranks) child.send({ peers });
    for (const bytes of options.sizes) {
      const results = await Promise.all(ranks.map((child) => child.next('result', SIZE_TIMEOUT_MS)));
      onSize(bytes, results.map(asSizeResult));
    }
    await Promise.all(ranks.map((child) => child.next('done', START_TIMEOUT_MS)));
    for (const child of ranks) child.send({ close: true });
    await Promise.all(ranks.map((child) => child.exited));
  } finally {
    for (const child of ranks) child.kill();
  }
}

function rankArgs(options: AllreduceBenchOptions, workers: number, rank: number, lab: LinkLab | undefined): string[] {
  return [
    'bench',
    'allreduce-rank',
    '--rank',
    String(rank),
    '--world-size',
    String(workers),
    '--host',
    lab?.ranks[rank]?.address ?? '127.0.0.1',
    '--sizes',
    options.sizes.join(','),
    '--compression',
    options.compression,
    '--warmup',
    String(options.warmup),
    '--iters',
    String(options.iters),
    '--chunk-bytes',
    String(options.chunkBytes),
    '--timeout-ms',
    String(options.collectiveTimeoutMs),
  ];
}
