// Cluster mode in real containers: the deploy/Dockerfile image, a coordinator and 3 workers on a
// Docker network, finding each other by name as Kubernetes pods would, and a reader container
// that copies the finished run off the volume as deploy/k8s/fetch does. Needs a Docker engine;
// builds the image offline from this machine's node (see test/containers/helpers/image.ts).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { service as healthServiceDefinition } from 'grpc-health-check';
import type { StartedTestContainer } from 'testcontainers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IPod } from 'kubernetes-models/v1/Pod';
import { CheckpointStore } from '../../coordinator/run/checkpoint-store.js';
import { readYamlDocuments } from '../../deploy/scripts/kustomize-lite.js';
import { LIVENESS_SERVICE } from '../../shared/health.js';
import { jobHash, loadJob } from '../../shared/job.js';
import { CONTROL_PORT, COORDINATOR_ALIAS, DockerCluster } from './helpers/cluster.js';
import { REPO_ROOT, ringtrainImage } from './helpers/image.js';

const WORKERS = ['worker-0', 'worker-1', 'worker-2'];
const LIMIT = 2000;
/** mnist `limit` minus the default 10% validation and 10% test split. */
const TRAIN_SAMPLES = LIMIT * 0.8;

function mnistJob(name: string, training: string, workers: string, extra: string[] = []): string {
  return [
    `name: ${name}`,
    'seed: 7',
    `data: { format: mnist, limit: ${LIMIT} }`,
    'model:',
    '  input: [784]',
    '  layers:',
    '    - { type: dense, units: 32, activation: relu }',
    '    - { type: dense, units: 10, activation: softmax }',
    'loss: categoricalCrossentropy',
    'metrics: [accuracy]',
    'optimizer: { type: adam, learningRate: 0.002 }',
    `training: ${training}`,
    `workers: ${workers}`,
    'backend: cpu',
    ...extra,
    '',
  ].join('\n');
}

interface StepLine {
  type: string;
  step: number;
  samples: number;
  ranks?: unknown[];
}
interface Summary {
  worldSize: number;
  steps: number;
  recoveries: number;
  workers: { rank: number }[];
  test?: { accuracy?: number };
}

function readRun(runDir: string): { summary: Summary; steps: StepLine[] } {
  const summary = JSON.parse(readFileSync(path.join(runDir, 'summary.json'), 'utf8')) as Summary;
  const lines = readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean);
  const steps = lines.map((line) => JSON.parse(line) as StepLine).filter((line) => line.type === 'step');
  return { summary, steps };
}

interface HealthClient extends grpc.Client {
  Check(
    request: { service: string },
    options: grpc.CallOptions,
    callback: grpc.requestCallback<{ status: string }>,
  ): void;
}
const HealthClientCtor = grpc.makeGenericClientConstructor(healthServiceDefinition, 'Health') as unknown as new (
  address: string,
  credentials: grpc.ChannelCredentials,
) => HealthClient;

/** One grpc.health.v1 Check, as Kubernetes' `grpc:` probe sends it. */
function healthStatus(address: string, service: string): Promise<string> {
  const client = new HealthClientCtor(address, grpc.credentials.createInsecure());
  return new Promise<string>((resolve, reject) => {
    client.Check({ service }, { deadline: Date.now() + 10_000 }, (error, response) => {
      client.close();
      if (error !== null) reject(error);
      else resolve(response?.status ?? 'missing');
    });
  });
}

/** The image is built once per test run and shared by every cluster below. */
let imageBuild: Promise<string> | undefined;
function imageForTests(): Promise<string> {
  imageBuild ??= ringtrainImage();
  return imageBuild;
}

describe('ringtrain in containers', () => {
  let image: string;
  let cluster: DockerCluster | undefined;

  beforeAll(async () => {
    image = await imageForTests();
  });

  afterAll(async () => {
    await cluster?.close();
  });

  describe('a coordinator and 3 worker containers', () => {
    let coordinator: StartedTestContainer;

    beforeAll(async () => {
      cluster = await DockerCluster.create(image);
      const job = mnistJob('e2e', '{ epochs: 1, batchSize: 96 }', '3');
      coordinator = await cluster.startCoordinator(job, WORKERS.length, 'e2e');
    });

    it('coordinator answers grpc.health.v1 (the Kubernetes probe) while it waits for workers', async () => {
      const address = `${coordinator.getHost()}:${coordinator.getMappedPort(CONTROL_PORT)}`;
      expect(await healthStatus(address, '')).toBe('SERVING');
      expect(await healthStatus(address, LIVENESS_SERVICE)).toBe('SERVING');
    });

    it('trains to completion and writes the run directory', async () => {
      const run = requireCluster(cluster);
      for (const alias of WORKERS) await run.startWorker(alias);
      expect(await run.exitCode(COORDINATOR_ALIAS), run.logTail(COORDINATOR_ALIAS)).toBe(0);
      for (const alias of WORKERS) expect(await run.exitCode(alias), run.logTail(alias)).toBe(0);

      const runDir = path.join(run.runsDir, 'e2e');
      const { summary, steps } = readRun(runDir);
      expect(summary.worldSize).toBe(3);
      expect(summary.workers.map((w) => w.rank).sort()).toEqual([0, 1, 2]);
      expect(steps.map((s) => s.step)).toEqual(Array.from({ length: summary.steps }, (_, i) => i));
      // One epoch covers every training sample exactly once, however it is sharded.
      expect(steps.reduce((sum, s) => sum + s.samples, 0)).toBe(TRAIN_SAMPLES);
      expect(steps.every((s) => s.ranks?.length === 3)).toBe(true);
      expect(summary.test?.accuracy).toBeGreaterThan(0.5);
      expect(existsSync(path.join(runDir, 'model', 'model.json'))).toBe(true);
    });

    it("a second container on the run volume, as deploy/k8s/fetch's reader pod, copies out the complete run", async () => {
      const run = requireCluster(cluster);
      const reader = readerPodSpec();
      await run.startReader('runs-reader', reader.command, reader.readOnly);
      // What `kubectl exec ringtrain-runs-reader -- tar -C /runs -cf - e2e | tar -xf -` does.
      const archive = run.exec('runs-reader', ['tar', '-C', '/runs', '-cf', '-', 'e2e']);
      expect(archive.status, archive.stderr).toBe(0);
      const fetched = mkdtempSync(path.join(tmpdir(), 'ringtrain-fetched-'));
      try {
        execFileSync('tar', ['-x', '-C', fetched], { input: archive.stdout });
        const copy = path.join(fetched, 'e2e');
        const files = treeOf(copy);
        expect(files).toEqual(treeOf(path.join(run.runsDir, 'e2e')));
        const { summary } = readRun(copy);
        const lastCheckpoint = `checkpoints/step-${String(summary.steps).padStart(9, '0')}`;
        for (const file of ['job.yaml', 'summary.json', 'metrics.jsonl', 'model/model.json', 'model/weights.bin'])
          expect(Object.keys(files)).toContain(file);
        expect(Object.keys(files)).toContain(`${lastCheckpoint}/state.bin`);
        // Every checkpoint in the copy verifies against its manifest's checksums.
        const store = new CheckpointStore(path.join(copy, 'checkpoints'), {
          keep: 3,
          jobHash: jobHash(loadJob(path.join(copy, 'job.yaml'))),
        });
        const newest = await store.loadLatestValid();
        expect(newest?.warnings).toEqual([]);
        expect(newest?.info.step).toBe(summary.steps);
        for (const info of await store.list()) await expect(store.load(info.step)).resolves.toBeDefined();
      } finally {
        rmSync(fetched, { recursive: true, force: true });
      }
      // The reader cannot change a run.
      const write = run.exec('runs-reader', ['node', '-e', "require('fs').writeFileSync('/runs/e2e/x', 'x')"]);
      expect(write.status).not.toBe(0);
      expect(write.stderr).toMatch(/EROFS/);
    });
  });

  // A killed worker's peers see their ring connections drop; the coordinator regroups the survivors
  // into a new generation and finishes the run with them.
  it('survives a worker container killed mid-run', async () => {
    await cluster?.close();
    cluster = await DockerCluster.create(image);
    await cluster.startCoordinator(
      mnistJob('recovery', '{ epochs: 3, batchSize: 32 }', '{ min: 2, max: 3 }'),
      WORKERS.length,
      'recovery',
    );
    for (const alias of WORKERS) await cluster.startWorker(alias);

    const metrics = path.join(cluster.runsDir, 'recovery', 'metrics.jsonl');
    await waitFor(() => existsSync(metrics) && readFileSync(metrics, 'utf8').split('\n').length > 5, 120_000);
    await cluster.kill('worker-2');

    expect(await cluster.exitCode(COORDINATOR_ALIAS), cluster.logTail(COORDINATOR_ALIAS)).toBe(0);
    const { summary, steps } = readRun(path.join(cluster.runsDir, 'recovery'));
    expect(summary.recoveries).toBeGreaterThanOrEqual(1);
    expect(summary.worldSize).toBe(2);
    const expectedSteps = 3 * Math.ceil(TRAIN_SAMPLES / 32);
    expect(summary.steps).toBe(expectedSteps);
    // Steps re-run after the failure may repeat, but none may be missing.
    expect(new Set(steps.map((s) => s.step)).size).toBe(expectedSteps);
    expect(summary.test?.accuracy).toBeGreaterThan(0.5);
  });
});

describe('mutual TLS and a job token', () => {
  let cluster: DockerCluster | undefined;
  afterAll(async () => cluster?.close());

  // As deploy/k8s runs it: every container gets the certificates and token from files and
  // RINGTRAIN_TLS_* / RINGTRAIN_TOKEN, and all of them (3 workers) finish the run.
  it('a coordinator and 3 workers train to completion over TLS with the token', async () => {
    cluster = await DockerCluster.create(await imageForTests(), { secure: true });
    await cluster.startCoordinator(mnistJob('secure', '{ epochs: 1, batchSize: 96 }', '3'), WORKERS.length, 'secure');
    for (const alias of WORKERS) await cluster.startWorker(alias);
    expect(await cluster.exitCode(COORDINATOR_ALIAS), cluster.logTail(COORDINATOR_ALIAS)).toBe(0);
    for (const alias of WORKERS) expect(await cluster.exitCode(alias), cluster.logTail(alias)).toBe(0);
    const { summary } = readRun(path.join(cluster.runsDir, 'secure'));
    expect(summary.worldSize).toBe(3);
    expect(summary.test?.accuracy).toBeGreaterThan(0.5);
  });
});

describe('a worker cut off the network', () => {
  let cluster: DockerCluster | undefined;
  afterAll(async () => cluster?.close());

  it('is evicted after timeouts.hangMs and the survivors finish the run', async () => {
    cluster = await DockerCluster.create(await imageForTests());
    await cluster.startCoordinator(
      mnistJob('netcut', '{ epochs: 3, batchSize: 32 }', '{ min: 2, max: 3 }', [
        'timeouts: { hangMs: 3000, collectiveMs: 20000 }',
      ]),
      WORKERS.length,
      'netcut',
    );
    for (const alias of WORKERS) await cluster.startWorker(alias);
    const metrics = path.join(cluster.runsDir, 'netcut', 'metrics.jsonl');
    await waitFor(() => existsSync(metrics) && readFileSync(metrics, 'utf8').split('\n').length > 5, 120_000);
    cluster.disconnect('worker-1');
    expect(await cluster.exitCode(COORDINATOR_ALIAS), cluster.logTail(COORDINATOR_ALIAS)).toBe(0);
    const { summary, steps } = readRun(path.join(cluster.runsDir, 'netcut'));
    expect(summary.worldSize).toBe(2);
    expect(summary.recoveries).toBeGreaterThanOrEqual(1);
    expect(new Set(steps.map((s) => s.step)).size).toBe(summary.steps);
  });
});

/** The reader pod's command and whether it mounts /runs read-only, from deploy/k8s/fetch. */
function readerPodSpec(): { command: string[]; readOnly: boolean } {
  const [pod] = readYamlDocuments(path.join(REPO_ROOT, 'deploy/k8s/fetch/runs-reader.yaml')) as IPod[];
  const container = pod?.spec?.containers[0];
  const mount = container?.volumeMounts?.find((m) => m.mountPath === '/runs');
  const volume = pod?.spec?.volumes?.find((v) => v.name === mount?.name);
  if (container?.command === undefined || mount === undefined)
    throw new Error('runs-reader.yaml: no command or /runs mount');
  return {
    command: container.command,
    readOnly: mount.readOnly === true && volume?.persistentVolumeClaim?.readOnly === true,
  };
}

/** Every regular file under `dir` (relative path) with its SHA-256. */
function treeOf(dir: string): Record<string, string> {
  const files: Record<string, string> = {};
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const full = path.join(entry.parentPath, entry.name);
    files[path.relative(dir, full)] = createHash('sha256').update(readFileSync(full)).digest('hex');
  }
  return files;
}

function requireCluster(cluster: DockerCluster | undefined): DockerCluster {
  if (cluster === undefined) throw new Error('the cluster did not start (see beforeAll)');
  return cluster;
}

/** Polls `condition` every 200 ms until it holds, or throws after `timeoutMs`. */
async function waitFor(condition: () => boolean, timeoutMs: number): Promise<void> {
  for (let waitedMs = 0; waitedMs < timeoutMs; waitedMs += 200) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`condition not met within ${timeoutMs} ms`);
}
