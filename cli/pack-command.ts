// `ringtrain pack JOB.yaml --out DIR`: the job's data (any format) as a packed folder that
// workers read by offset; `ringtrain pack --verify DIR` rechecks a packed folder's shards.
import { InvalidArgumentError, type Command } from 'commander';
import { parseByteSize } from '../bench/units.js';
import { openDataSource } from '../shared/data/data-source.js';
import { datasetSummary } from '../shared/data/dataset.js';
import { DEFAULT_SHARD_BYTES, packDataSource } from '../shared/data/packed-writer.js';
import { verifyPackedDir } from '../shared/data/packed-verify.js';
import { FlagError } from '../shared/errors.js';
import { loadJob } from '../shared/job.js';

const print = (line: string): void => void process.stdout.write(`${line}\n`);

export function addPackCommand(program: Command): void {
  program
    .command('pack')
    .description("write the job's data as a packed folder (shards + manifest) that workers read by offset")
    .argument('[job]', 'job file whose data section names the source')
    .option('--out <dir>', 'packed folder to create (must not exist)')
    .option('--shard-size <B>', 'bytes per shard, e.g. 64MiB', shardSize, DEFAULT_SHARD_BYTES)
    .option('--verify <dir>', "recheck a packed folder's shards (size and sha256) and name any bad one")
    .action(async (jobFile: string | undefined, flags: { out?: string; shardSize: number; verify?: string }) => {
      if (flags.verify !== undefined) {
        const result = verifyPackedDir(flags.verify);
        print(
          `ringtrain: ${flags.verify}: ${result.shards} shards, ${result.bytes} bytes, all checksums match (hash ${result.hash})`,
        );
        return;
      }
      if (jobFile === undefined)
        throw new FlagError('job', 'give the job file whose data to pack (ringtrain pack JOB.yaml --out DIR)');
      if (flags.out === undefined)
        throw new FlagError('--out', 'name the folder to write (ringtrain pack JOB.yaml --out DIR)');
      const job = loadJob(jobFile);
      if (job.data.format === 'packed')
        throw new FlagError(
          'job',
          `${jobFile} already trains from a packed folder (${job.data.path}); nothing to pack`,
        );
      const source = await openDataSource(job);
      const result = packDataSource(source, job, flags.out, { shardBytes: flags.shardSize });
      const shards = Object.values(result.manifest.splits).reduce((n, s) => n + s.shards.length, 0);
      print(`ringtrain: packed ${datasetSummary(source)}`);
      print(`ringtrain: wrote ${result.dir}: ${shards} shards, ${result.bytes} bytes, hash ${result.manifest.hash}`);
    });
}

function shardSize(value: string): number {
  const bytes = parseByteSize(value, '--shard-size');
  if (bytes <= 0) throw new InvalidArgumentError(`--shard-size must be positive, got "${value}"`);
  return bytes;
}
