// deploy/k8s, checked offline: every object in every YAML file validates against the Kubernetes
// API schemas (kubernetes-models; JobSet against deploy/scripts/jobset-schema.ts), every file is
// used by some kustomization, and each rendered deployment (base, overlays, JobSet) holds the
// invariants the trainer relies on. Rendering uses deploy/scripts/kustomize-lite.ts.
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Job, type IJob } from 'kubernetes-models/batch/v1/Job';
import type { IJobSpec } from 'kubernetes-models/batch/v1/JobSpec';
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IPersistentVolumeClaimVolumeSource } from 'kubernetes-models/v1/PersistentVolumeClaimVolumeSource';
import type { IPod } from 'kubernetes-models/v1/Pod';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import { Service, type IService } from 'kubernetes-models/v1/Service';
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { readYamlDocuments, renderKustomization, type K8sObject } from '../../deploy/scripts/kustomize-lite.js';
import { validateObject } from '../../deploy/scripts/validate-object.js';
import type { JobSetManifest } from '../../deploy/scripts/jobset-schema.js';
import { resolveCoordinatorTarget } from '../../shared/coordinator-address.js';
import { jobSchema } from '../../shared/job-schema.js';

const K8S_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../deploy/k8s');
const yamlFiles = readdirSync(K8S_DIR, { recursive: true, encoding: 'utf8' })
  .filter((file) => file.endsWith('.yaml'))
  .sort();

/** The parts of one rendered deployment the invariants talk about. */
interface Deployment {
  coordinatorJob: IJobSpec;
  workersJob: IJobSpec;
  coordinatorPod: IPodSpec;
  workerPod: IPodSpec;
  /** host:port under which the coordinator's gRPC port is reachable, from Services or JobSet DNS. */
  coordinatorAddress: string;
  /** WORKER_HOST each worker should advertise: its per-index pod DNS name. */
  workerHostPattern: string;
}

function isKustomization(value: unknown): boolean {
  return typeof value === 'object' && value !== null && 'kind' in value && value.kind === 'Kustomization';
}

function must<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`missing: ${what}`);
  return value;
}

function deploymentOf(objects: readonly K8sObject[]): Deployment {
  const jobSet = objects.find((o) => o.kind === 'JobSet') as JobSetManifest | undefined;
  return jobSet === undefined ? plainDeployment(objects) : jobSetDeployment(jobSet);
}

function selects(service: IService, pod: { labels?: Record<string, string> } | undefined): boolean {
  const selector = Object.entries(service.spec?.selector ?? {});
  return selector.length > 0 && selector.every(([key, value]) => pod?.labels?.[key] === value);
}

/** Plain Jobs: the coordinator is reached through the Service that selects only its pod. */
function plainDeployment(objects: readonly K8sObject[]): Deployment {
  const job = (name: string): IJobSpec =>
    must((objects.find((o) => o.kind === 'Job' && o.metadata.name === name) as IJob | undefined)?.spec, name);
  const [coordinatorJob, workersJob] = [job('ringtrain-coordinator'), job('ringtrain-workers')];
  const services = objects.filter((o) => o.kind === 'Service') as IService[];
  const toCoordinator = services.find(
    (s) => selects(s, coordinatorJob.template.metadata) && !selects(s, workersJob.template.metadata),
  );
  const grpcPort = toCoordinator?.spec?.ports?.find((p) => p.targetPort === 'grpc')?.port;
  const headless = services.find((s) => s.spec?.clusterIP === 'None' && selects(s, workersJob.template.metadata));
  const subdomain = workersJob.template.spec?.subdomain;
  return {
    coordinatorJob,
    workersJob,
    coordinatorPod: must(coordinatorJob.template.spec, 'coordinator pod'),
    workerPod: must(workersJob.template.spec, 'worker pod'),
    coordinatorAddress: `${toCoordinator?.metadata?.name ?? 'no Service selects only the coordinator'}:${grpcPort ?? '?'}`,
    workerHostPattern:
      headless?.metadata?.name === subdomain
        ? `ringtrain-workers-$(JOB_COMPLETION_INDEX).${subdomain ?? ''}`
        : "the workers' subdomain is not their headless Service",
  };
}

/** JobSet: pods are <jobset>-<replicatedJob>-<jobIndex>-<podIndex>.<subdomain>. */
function jobSetDeployment(jobSet: JobSetManifest): Deployment {
  const spec = (name: string): IJobSpec =>
    must(jobSet.spec.replicatedJobs.find((r) => r.name === name)?.template.spec as IJobSpec | undefined, name);
  const [coordinatorJob, workersJob] = [spec('coordinator'), spec('workers')];
  const subdomain =
    jobSet.spec.network?.enableDNSHostnames === true
      ? (jobSet.spec.network.subdomain ?? jobSet.metadata.name)
      : 'dns-off';
  const grpcPort = mainContainer(coordinatorJob.template.spec, 'coordinator').ports?.find((p) => p.name === 'grpc');
  return {
    coordinatorJob,
    workersJob,
    coordinatorPod: must(coordinatorJob.template.spec, 'coordinator pod'),
    workerPod: must(workersJob.template.spec, 'worker pod'),
    coordinatorAddress: `${jobSet.metadata.name}-coordinator-0-0.${subdomain}:${grpcPort?.containerPort ?? '?'}`,
    workerHostPattern: `${jobSet.metadata.name}-workers-0-$(JOB_COMPLETION_INDEX).${subdomain}`,
  };
}

function mainContainer(pod: IPodSpec | undefined, name: string): IContainer {
  return must(
    pod?.containers.find((c) => c.name === name),
    `container ${name}`,
  );
}

function envValue(container: IContainer, name: string): string {
  return must(container.env?.find((e) => e.name === name)?.value, `${container.name} env ${name}`);
}

describe('every YAML file under deploy/k8s', () => {
  it.each(yamlFiles)('%s holds only valid objects, kustomizations or JSON patches', (file) => {
    const documents = readYamlDocuments(path.join(K8S_DIR, file));
    expect(documents.length).toBeGreaterThan(0);
    for (const document of documents) {
      // Patches are lists of operations; they are checked by rendering the kustomizations below.
      if (Array.isArray(document) || isKustomization(document)) continue;
      validateObject(document as K8sObject);
    }
  });

  it('is used by some kustomization (no orphan manifests)', () => {
    const used = new Set<string>();
    for (const file of yamlFiles.filter((f) => path.basename(f) === 'kustomization.yaml')) {
      const dir = path.dirname(file);
      used.add(file);
      const [kustomization] = readYamlDocuments(path.join(K8S_DIR, file)) as {
        resources?: string[];
        patches?: { path?: string }[];
      }[];
      for (const resource of kustomization?.resources ?? []) used.add(path.join(dir, resource));
      for (const patch of kustomization?.patches ?? [])
        if (patch.path !== undefined) used.add(path.join(dir, patch.path));
    }
    expect(yamlFiles.filter((file) => !used.has(file))).toEqual([]);
  });
});

describe.each([
  { dir: 'base', workers: 3, gpu: false },
  { dir: 'overlays/cpu', workers: 4, gpu: false },
  { dir: 'overlays/gpu', workers: 2, gpu: true },
  { dir: 'jobset', workers: 3, gpu: false },
])('rendered $dir', ({ dir, workers, gpu }) => {
  const objects = renderKustomization(path.join(K8S_DIR, dir));
  const deployment: Deployment = deploymentOf(objects);
  const jobSetRendered = objects.some((o) => o.kind === 'JobSet');
  const coordinator = mainContainer(deployment.coordinatorPod, 'coordinator');
  const worker = mainContainer(deployment.workerPod, 'worker');

  it('validates against the API schemas', () => {
    for (const object of objects) validateObject(object);
  });

  it(`runs N = ${workers} workers: parallelism == completions == --expect-workers`, () => {
    expect(deployment.workersJob.completionMode).toBe('Indexed');
    expect(deployment.workersJob.parallelism).toBe(workers);
    expect(deployment.workersJob.completions).toBe(workers);
    expect(envValue(coordinator, 'RINGTRAIN_WORKERS')).toBe(String(workers));
    expect(coordinator.args).toEqual(expect.arrayContaining(['--expect-workers', '$(RINGTRAIN_WORKERS)']));
  });

  it('replaces a failed worker pod per index', () => {
    expect(deployment.workersJob.backoffLimitPerIndex).toBeGreaterThanOrEqual(1);
    expect(deployment.workersJob.podFailurePolicy?.rules.length).toBeGreaterThan(0);
    // Kubernetes accepts podFailurePolicy only with restartPolicy Never.
    expect(deployment.workerPod.restartPolicy).toBe('Never');
    expect(deployment.coordinatorPod.restartPolicy).toBe('Never');
  });

  it('gives the coordinator at least 30 s to checkpoint after SIGTERM', () => {
    expect(deployment.coordinatorPod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(30);
  });

  // Under mutual TLS the kubelet's gRPC probe (plaintext, no client certificate) would be refused.
  it('probes both roles by TCP on their listening ports', () => {
    const dataPort = Number(worker.args?.[(worker.args.indexOf('--data-port') ?? -2) + 1]);
    expect(coordinator.args).toEqual(expect.arrayContaining(['--port', '7070']));
    for (const [container, port] of [
      [coordinator, 7070],
      [worker, dataPort],
    ] as const) {
      expect(container.readinessProbe?.tcpSocket?.port).toBe(port);
      expect(container.livenessProbe?.tcpSocket?.port).toBe(port);
      expect(container.ports?.map((p) => p.containerPort)).toContain(port);
    }
  });

  it('gives both roles the TLS files and the job token from Secrets, and has them listen beyond loopback', () => {
    for (const [container, pod] of [
      [coordinator, deployment.coordinatorPod],
      [worker, deployment.workerPod],
    ] as const) {
      const mount = must(
        container.volumeMounts?.find((m) => m.mountPath === '/etc/ringtrain-tls'),
        `${container.name} TLS mount`,
      );
      const volume = pod.volumes?.find((v) => v.name === mount.name);
      expect(volume?.secret?.secretName).toBe('ringtrain-tls');
      // 0440: readable by the pod's fsGroup, which the container's user belongs to.
      expect(volume?.secret?.defaultMode).toBe(0o440);
      expect(pod.securityContext?.fsGroup).toBe(pod.securityContext?.runAsUser);
      expect(envValue(container, 'RINGTRAIN_TLS_CA')).toBe('/etc/ringtrain-tls/ca.crt');
      expect(envValue(container, 'RINGTRAIN_TLS_CERT')).toBe('/etc/ringtrain-tls/tls.crt');
      expect(envValue(container, 'RINGTRAIN_TLS_KEY')).toBe('/etc/ringtrain-tls/tls.key');
      const token = container.env?.find((e) => e.name === 'RINGTRAIN_TOKEN')?.valueFrom?.secretKeyRef;
      expect(token).toEqual({ name: 'ringtrain-token', key: 'token' });
    }
    const flagValue = (args: string[] | undefined, flag: string): string | undefined => args?.[args.indexOf(flag) + 1];
    expect(flagValue(coordinator.args, '--host')).toBe('0.0.0.0');
    expect(flagValue(worker.args, '--bind')).toBe('0.0.0.0');
  });

  it('has Prometheus scrape the coordinator: --http on the metrics port, annotated for scraping', () => {
    const args = coordinator.args ?? [];
    const address = args[args.indexOf('--http') + 1] ?? '';
    const port = Number(address.split(':').at(-1));
    expect(address.startsWith('0.0.0.0:')).toBe(true); // reachable from the pod network, not loopback only
    expect(coordinator.ports?.find((p) => p.name === 'metrics')?.containerPort).toBe(port);
    expect(deployment.coordinatorJob.template.metadata?.annotations).toEqual(
      expect.objectContaining({
        'prometheus.io/scrape': 'true',
        'prometheus.io/port': String(port),
        'prometheus.io/path': '/metrics',
      }),
    );
  });

  it('points workers at the coordinator by a name that resolves to its gRPC port', () => {
    const target = resolveCoordinatorTarget(undefined, {
      RINGTRAIN_COORDINATOR: envValue(worker, 'RINGTRAIN_COORDINATOR'),
    });
    expect(target.address).toBe(deployment.coordinatorAddress);
  });

  it('has each worker advertise its stable per-index DNS name', () => {
    expect(worker.args).toEqual(expect.arrayContaining(['--host', '$(WORKER_HOST)']));
    expect(envValue(worker, 'WORKER_HOST')).toBe(deployment.workerHostPattern);
    const index = worker.env?.find((e) => e.name === 'JOB_COMPLETION_INDEX');
    expect(index?.valueFrom?.fieldRef?.fieldPath).toBe(
      "metadata.annotations['batch.kubernetes.io/job-completion-index']",
    );
  });

  it('mounts a valid job file at /etc/ringtrain/job.yaml and the run volume at /runs', () => {
    const configMap = objects.find((o) => o.kind === 'ConfigMap') as IConfigMap | undefined;
    const job = jobSchema.safeParse(parseYaml(configMap?.data?.['job.yaml'] ?? ''));
    expect(job.success, job.error?.message).toBe(true);
    const mounts = new Map(coordinator.volumeMounts?.map((m) => [m.mountPath, m.name]));
    const volumes = new Map(deployment.coordinatorPod.volumes?.map((v) => [v.name, v]));
    expect(volumes.get(mounts.get('/etc/ringtrain') ?? '')?.configMap?.name).toBe(configMap?.metadata?.name);
    const claim = volumes.get(mounts.get('/runs') ?? '')?.persistentVolumeClaim?.claimName;
    expect(objects.some((o) => o.kind === 'PersistentVolumeClaim' && o.metadata.name === claim)).toBe(true);
    expect(coordinator.args?.[1]).toBe('/etc/ringtrain/job.yaml');
  });

  it('keeps one run directory for every coordinator pod and resumes it without edited args', () => {
    const args = coordinator.args ?? [];
    expect(args).toContain('--resume-if-exists');
    expect(args[args.indexOf('--runs-dir') + 1]).toBe('/runs');
    const out = args[args.indexOf('--out') + 1] ?? '';
    expect(out).toMatch(/^\/runs\/[^/]+$/);
    // The name may only use labels the controller gives every pod it starts for this run: a
    // pod's own name or uid would change with each replacement, and the run would start over.
    const labels = [...out.matchAll(/\$\((\w+)\)/g)].map(
      ([, name]) => coordinator.env?.find((e) => e.name === name)?.valueFrom?.fieldRef?.fieldPath,
    );
    expect(labels).toEqual(
      jobSetRendered
        ? ["metadata.labels['jobset.sigs.k8s.io/jobset-name']"]
        : ["metadata.labels['batch.kubernetes.io/job-name']", "metadata.labels['batch.kubernetes.io/controller-uid']"],
    );
  });

  it('replaces a failed coordinator pod in its Job, and workers wait for it with their replicas', () => {
    expect(deployment.coordinatorJob.backoffLimit).toBeGreaterThanOrEqual(1);
    const rules = deployment.coordinatorJob.podFailurePolicy?.rules ?? [];
    expect(rules.find((r) => r.action === 'Ignore')?.onPodConditions).toEqual([
      { type: 'DisruptionTarget', status: 'True' },
    ]);
    const reconnectMs = Number(worker.args?.[(worker.args.indexOf('--reconnect-ms') ?? -2) + 1]);
    // Long enough for a replacement pod after a node loss (about 5 min until its pods are evicted).
    expect(reconnectMs).toBeGreaterThanOrEqual(300_000);
  });

  it('declares every $(VAR) the args use', () => {
    for (const container of [coordinator, worker]) {
      const names = new Set(container.env?.map((e) => e.name));
      const used = (container.args ?? []).flatMap((arg) => [...arg.matchAll(/\$\((\w+)\)/g)].map((m) => m[1]));
      expect(used.filter((name) => !names.has(name ?? ''))).toEqual([]);
    }
  });

  it('runs as a non-root user with a read-only root filesystem', () => {
    for (const [pod, container] of [
      [deployment.coordinatorPod, coordinator],
      [deployment.workerPod, worker],
    ] as const) {
      expect(pod.securityContext?.runAsNonRoot).toBe(true);
      expect(container.securityContext?.readOnlyRootFilesystem).toBe(true);
    }
  });

  it(gpu ? 'gives each worker one GPU and the GPU image' : 'asks for no GPU', () => {
    expect(worker.resources?.limits?.['nvidia.com/gpu']).toBe(gpu ? 1 : undefined);
    expect(coordinator.resources?.limits?.['nvidia.com/gpu']).toBeUndefined();
    if (dir !== 'base') expect(worker.image).toBe(`registry.example.com/ringtrain${gpu ? '-gpu' : ''}:0.1.0`);
  });
});

describe('rendered fetch (the run-volume reader)', () => {
  const objects = renderKustomization(path.join(K8S_DIR, 'fetch'));
  const pod = objects.find((o) => o.kind === 'Pod') as IPod | undefined;
  const reader = mainContainer(pod?.spec, 'reader');
  const cpu = renderKustomization(path.join(K8S_DIR, 'overlays/cpu'));
  const coordinatorPod = deploymentOf(cpu).coordinatorPod;

  it('is one valid Pod, apart from the PVC and every job (deleting it deletes nothing else)', () => {
    expect(objects.map((o) => o.kind)).toEqual(['Pod']);
    for (const object of objects) validateObject(object);
    for (const dir of ['base', 'overlays/cpu', 'overlays/gpu', 'jobset'])
      expect(renderKustomization(path.join(K8S_DIR, dir)).some((o) => o.kind === 'Pod')).toBe(false);
  });

  it("mounts the coordinators' run volume read-only at the same path", () => {
    const claimOf = (spec: IPodSpec | undefined, mountPath: string): IPersistentVolumeClaimVolumeSource | undefined => {
      const container = spec?.containers[0];
      const mount = container?.volumeMounts?.find((m) => m.mountPath === mountPath);
      return spec?.volumes?.find((v) => v.name === mount?.name)?.persistentVolumeClaim;
    };
    const written = claimOf(coordinatorPod, '/runs');
    const read = claimOf(pod?.spec, '/runs');
    expect(read?.claimName).toBe(written?.claimName);
    expect(cpu.some((o) => o.kind === 'PersistentVolumeClaim' && o.metadata.name === read?.claimName)).toBe(true);
    expect(read?.readOnly).toBe(true);
    expect(reader.volumeMounts?.find((m) => m.mountPath === '/runs')?.readOnly).toBe(true);
  });

  it('runs the deployed image, non-root, and frees the volume by itself after a bounded time', () => {
    expect(reader.image).toBe(mainContainer(coordinatorPod, 'coordinator').image);
    expect(pod?.spec?.securityContext?.runAsNonRoot).toBe(true);
    expect(reader.securityContext?.readOnlyRootFilesystem).toBe(true);
    expect(pod?.spec?.activeDeadlineSeconds).toBeGreaterThan(0);
    expect(pod?.spec?.restartPolicy).toBe('Never');
  });

  it('replaces the entrypoint with a wait that node runs and SIGTERM ends at once', async () => {
    const [command, flag, script] = reader.command ?? [];
    expect([command, flag, reader.args]).toEqual(['node', '-e', undefined]);
    // The script as written, plus one line that says it got past its own statements.
    const child = spawn(process.execPath, ['-e', `${script ?? ''}\nconsole.log('waiting');`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    const waiting = new Promise<void>((resolve) =>
      child.stdout.on('data', (d: Buffer) => {
        output += d.toString();
        if (output.includes('waiting')) resolve();
      }),
    );
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await Promise.race([waiting, exited]);
    expect(child.exitCode, output).toBeNull();
    child.kill('SIGTERM');
    expect(await exited, output).toBe(0);
  });
});

describe('the validators are not vacuous', () => {
  const objects = renderKustomization(path.join(K8S_DIR, 'base'));
  const workersJob = objects.find((o) => o.metadata.name === 'ringtrain-workers' && o.kind === 'Job') as IJob;

  it('rejects a Job whose parallelism is a string', () => {
    const broken = structuredClone(workersJob);
    (broken.spec as unknown as Record<string, unknown>)['parallelism'] = '3';
    expect(() => new Job(broken).validate()).toThrow(/parallelism/);
  });

  it('rejects a Service whose port is not a number', () => {
    const service = structuredClone(objects.find((o) => o.kind === 'Service')) as IService;
    service.spec?.ports?.forEach((port) => (port.port = 'grpc' as unknown as number));
    expect(() => new Service(service).validate()).toThrow(/port/);
  });

  it('rejects a JobSet with a misspelt field', () => {
    const [jobSet] = renderKustomization(path.join(K8S_DIR, 'jobset')).filter((o) => o.kind === 'JobSet');
    const broken = structuredClone(jobSet) as K8sObject & { spec: Record<string, unknown> };
    broken.spec['successPolicyy'] = broken.spec['successPolicy'];
    expect(() => validateObject(broken)).toThrow(/successPolicyy/);
  });

  it('rejects an object of a kind it has no schema for', () => {
    const unknownKind = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'x' } };
    expect(() => validateObject(unknownKind)).toThrow(/no validator/);
  });
});
