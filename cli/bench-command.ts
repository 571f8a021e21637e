// `ringtrain bench allreduce | train`: measurements printed side by side with this machine's own
// baselines (raw TCP, plain model.fit). Hidden subcommands are the measured child processes.
import * as os from 'node:os';
import { Option, type Command } from 'commander';
import { runAllreduceBench } from '../bench/allreduce-bench.js';
import { runAllreduceRank } from '../bench/allreduce-rank.js';
import { report } from '../bench/bench-child.js';
import { runBareGradient } from '../bench/bare-gradient.js';
import { MAX_LAB_RANKS, parseLinkSpec, type LinkSpec } from '../bench/link-lab.js';
import { runDataBench, type DataBenchOptions } from '../bench/data-bench.js';
import { runRssProbe } from '../bench/rss-probe.js';
import { runTcpSink } from '../bench/tcp-baseline.js';
import { runTrainBench, type TrainBenchOptions } from '../bench/train-bench.js';
import { parseByteSize, parseIntList, parseSizeList } from '../bench/units.js';
import { describeError } from '../shared/errors.js';
import { WIRE_CODECS, type WireCodec } from '../worker/collectives/wire-compression.js';
import { nonNegativeInt, positiveInt } from './arg-parsers.js';

const DEFAULT_SIZES = '4KiB,64KiB,1MiB,16MiB,64MiB,256MiB';
const print = (line: string): void => void process.stdout.write(`${line}\n`);

interface RingFlags {
  compression: WireCodec;
  chunkBytes: number;
  timeoutMs: number;
}

function addRingOptions(command: Command): Command {
  return command
    .addOption(
      new Option('--compression <codec>', 'wire form of ring chunks').choices([...WIRE_CODECS]).default('none'),
    )
    .option('--chunk-bytes <B>', 'ring chunk size, e.g. 256KiB', (v) => parseByteSize(v, '--chunk-bytes'), 256 * 1024)
    .option('--timeout-ms <ms>', 'bound on any one chunk, connect or stall', positiveInt('--timeout-ms'), 120_000);
}

export function addBenchCommand(program: Command): void {
  const bench = program
    .command('bench')
    .description('benchmarks against this machine: the all-reduce vs raw TCP, training vs plain model.fit');

  addRingOptions(
    bench
      .command('allreduce')
      .description('all-reduce bandwidth over N local worker processes, nccl-tests style, with a raw TCP baseline'),
  )
    .option('--workers <list>', 'world sizes to measure, e.g. 2,4,8', parseIntList('--workers', 1, MAX_LAB_RANKS), [2])
    .option('--sizes <list>', 'buffer sizes', parseSizeList('--sizes'), parseSizeList('--sizes')(DEFAULT_SIZES))
    .option(
      '--iters <K>',
      'timed iterations per size (scaled down above 16 MiB, at least 3)',
      positiveInt('--iters'),
      20,
    )
    .option(
      '--warmup <K>',
      'untimed iterations per size (scaled down above 16 MiB, at least 1)',
      nonNegativeInt('--warmup', 1000),
      5,
    )
    .option('--tcp-bytes <B>', 'bytes per raw TCP baseline run', (v) => parseByteSize(v, '--tcp-bytes'), 1024 ** 3)
    .option('--tcp-runs <K>', 'raw TCP baseline runs (best is kept)', positiveInt('--tcp-runs'), 3)
    .addOption(new Option('--peer <name>', "also measure PyTorch's gloo all-reduce in the same run").choices(['gloo']))
    .option(
      '--link <RATE[,DELAY]>',
      'run each rank in its own network namespace behind a link shaped with tc, e.g. 1gbit,100us (root only)',
      parseLinkSpec,
    )
    .option('--json <file>', 'write one JSON row per measurement')
    .action(
      async (
        flags: RingFlags & {
          workers: number[];
          peer?: 'gloo';
          link?: LinkSpec;
          sizes: number[];
          iters: number;
          warmup: number;
          tcpBytes: number;
          tcpRuns: number;
          json?: string;
        },
      ) => {
        const { json, peer, link, ...rest } = flags;
        await runAllreduceBench({
          ...rest,
          collectiveTimeoutMs: flags.timeoutMs,
          write: print,
          ...(json !== undefined ? { json } : {}),
          ...(peer !== undefined ? { peer } : {}),
          ...(link !== undefined ? { link } : {}),
        });
      },
    );

  bench
    .command('train')
    .description(
      'training throughput at several world sizes, per-rank step split, peak RSS, vs the bare gradient loop, model.fit and optionally PyTorch DDP',
    )
    .argument('[job]', 'job file; default: the built-in MNIST MLP on the wasm backend')
    .option('--workers <list>', 'world sizes to run, e.g. 1,2,4', parseIntList('--workers', 1, 64), [1, 2, 4])
    .option('--steps <K>', 'measured steps per world size', positiveInt('--steps'), 40)
    .option(
      '--warmup-steps <K>',
      'steps run first and left out of the figures',
      nonNegativeInt('--warmup-steps', 1000),
      5,
    )
    .addOption(
      new Option('--backend <name>', "override the job's backend").choices(['auto', 'tensorflow', 'wasm', 'cpu']),
    )
    .addOption(
      new Option('--compression <codec>', "override the job's allreduce.compression").choices([...WIRE_CODECS]),
    )
    .option('--no-baseline', 'skip the model.fit baseline')
    .option('--no-ceiling', 'skip the bare gradient loop (the compute ceiling at each world size)')
    .addOption(
      new Option('--peer <name>', 'also train the job with a peer in the same sitting (PyTorch DDP over gloo)').choices(
        ['pytorch'],
      ),
    )
    .option('--json <file>', 'write one JSON row per run')
    .action(async (job: string | undefined, flags: Omit<TrainBenchOptions, 'jobFile' | 'write'>) => {
      await runTrainBench({ jobFile: job, ...flags, write: print });
    });

  bench
    .command('data')
    .description(
      'peak worker RSS and samples/s on packed datasets of about 100 MB and 4 GB (memory must not grow with the data)',
    )
    .option('--sizes <list>', 'packed dataset sizes', parseSizeList('--sizes'), parseSizeList('--sizes')('100MiB,4GiB'))
    .option('--workers <N>', 'local worker processes', positiveInt('--workers'), 2)
    .option('--steps <K>', 'measured steps per size', positiveInt('--steps'), 40)
    .option(
      '--warmup-steps <K>',
      'steps run first and left out of the figures',
      nonNegativeInt('--warmup-steps', 1000),
      5,
    )
    .option('--batch-size <B>', 'global batch', positiveInt('--batch-size'), 256)
    .option('--feature-size <F>', 'float32 features per sample', positiveInt('--feature-size'), 256)
    .option('--dir <dir>', 'where to write the packed datasets (all sizes at once, removed at the end)', os.tmpdir())
    .option('--rounds <R>', 'training runs per size, taken in turn; figures are medians', positiveInt('--rounds'), 3)
    .addOption(new Option('--backend <name>', 'backend').choices(['auto', 'tensorflow', 'wasm', 'cpu']).default('wasm'))
    .option('--json <file>', 'write one JSON row per size')
    .action(async (flags: Omit<DataBenchOptions, 'write'>) => {
      await runDataBench({ ...flags, write: print });
    });

  addRingOptions(bench.command('allreduce-rank', { hidden: true }))
    .requiredOption('--rank <R>', 'this rank', nonNegativeInt('--rank'))
    .requiredOption('--world-size <N>', 'ranks in the ring', positiveInt('--world-size'))
    .option('--host <addr>', 'address to listen on', '127.0.0.1')
    .requiredOption('--sizes <list>', 'buffer sizes', parseSizeList('--sizes'))
    .option('--iters <K>', 'timed iterations', positiveInt('--iters'), 5)
    .option('--warmup <K>', 'untimed iterations', nonNegativeInt('--warmup', 1000), 2)
    .action(
      async (
        flags: RingFlags & {
          rank: number;
          worldSize: number;
          host: string;
          sizes: number[];
          iters: number;
          warmup: number;
        },
      ) => {
        await reportFailures(() => runAllreduceRank({ ...flags, collectiveTimeoutMs: flags.timeoutMs }));
      },
    );

  bench
    .command('tcp-sink', { hidden: true })
    .requiredOption('--port <P>', 'port of the sender', nonNegativeInt('--port', 65535))
    .requiredOption('--bytes <B>', 'bytes per run', positiveInt('--bytes'))
    .requiredOption('--runs <K>', 'runs', positiveInt('--runs'))
    .option('--bidirectional', 'also send each run back over a second connection')
    .action(async (flags: { port: number; bytes: number; runs: number; bidirectional?: boolean }) => {
      const onListening = (port: number): void => report({ event: 'listening', port });
      await reportFailures(async () => report({ event: 'done', ...(await runTcpSink({ ...flags, onListening })) }));
    });

  bench
    .command('bare-grad', { hidden: true })
    .argument('[job]', 'job file')
    .option('--backend <name>', 'backend')
    .requiredOption('--samples <K>', 'samples per gradient', positiveInt('--samples'))
    .requiredOption('--steps <K>', 'timed steps', positiveInt('--steps'))
    .option('--warmup-steps <K>', 'untimed steps', nonNegativeInt('--warmup-steps', 1000), 5)
    .option('--write-params', 'write the parameters back into the model before every gradient')
    .action(
      async (
        job: string | undefined,
        flags: { backend?: string; samples: number; steps: number; warmupSteps: number; writeParams?: boolean },
      ) => {
        await reportFailures(() => runBareGradient({ jobFile: job, ...flags, backend: flags.backend }));
      },
    );

  bench
    .command('rss-probe', { hidden: true })
    .argument('[job]', 'job file')
    .option('--backend <name>', 'backend')
    .action(async (job: string | undefined, flags: { backend?: string }) => {
      await reportFailures(async () => report({ event: 'rss', ...(await runRssProbe(job, flags.backend)) }));
    });
}

/** A child reports its failure to the parent before exiting non-zero through the usual path. */
async function reportFailures(work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (error) {
    report({ event: 'error', message: describeError(error) });
    throw error;
  }
}
