// The runtime baseline for worker memory (the hidden `bench rss-probe`): a process that loads
// what every worker loads before its model exists — Node, TensorFlow.js with the job's backend,
// and the dataset — and reports its peak RSS. Worker peak minus this is what training costs.
import { openDataSource } from '../shared/data/data-source.js';
import { selectBackend } from '../worker/backend/backend.js';
import { loadBenchJob } from './bench-job.js';

export async function runRssProbe(
  jobFile: string | undefined,
  backend: string | undefined,
): Promise<{ maxRssBytes: number; backend: string }> {
  const job = loadBenchJob(jobFile, backend !== undefined ? { backend } : {});
  const info = await selectBackend(job.backend);
  await openDataSource(job); // what a worker opens: a packed folder or a module is not read whole
  return { maxRssBytes: process.resourceUsage().maxRSS * 1024, backend: info.name };
}
