// A ringtrain cluster in Docker: one coordinator container and N worker containers on a
// user-defined network (so they find each other by alias), the run directory on a bind mount
// that a reader container can mount too. A secure cluster (`create(image, { secure: true })`)
// gives every container the certificates and token of `ringtrain certs`, as deploy/k8s's Secret
// does: mounted files and the RINGTRAIN_TLS_* / RINGTRAIN_TOKEN variables.
// Ryuk cannot be pulled here (TESTCONTAINERS_RYUK_DISABLED=true), so `close()` removes every
// container and the network itself; it never throws, so it is safe in afterAll.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import {
  GenericContainer,
  getContainerRuntimeClient,
  Network,
  Wait,
  type StartedNetwork,
  type StartedTestContainer,
} from 'testcontainers';
import { makeCerts } from '../../../shared/security/make-certs.js';

export const COORDINATOR_ALIAS = 'coordinator';
export const CONTROL_PORT = 7070;
export const DATA_PORT = 7071;
const JOB_PATH = '/etc/ringtrain/job.yaml';
const TLS_DIR = '/etc/ringtrain/tls';

type BindMount = { source: string; target: string; mode: 'ro' | 'rw' };
const MAX_LOG_LINES = 400;

/** Exits 0 once something listens on the control port: `node` is the only tool the image promises. */
const CONTROL_PORT_OPEN = `node -e "require('net').connect(${CONTROL_PORT}, '127.0.0.1').on('connect', () => process.exit(0)).on('error', () => process.exit(1))"`;

export class DockerCluster {
  /** Host folder mounted at /runs in the coordinator. */
  readonly runsDir: string;
  private readonly containers = new Map<string, StartedTestContainer>();
  private readonly logs = new Map<string, string[]>();
  /** Every container's TLS mount and environment (none for a plaintext cluster). */
  private security: { mounts: BindMount[]; env: Record<string, string> } = { mounts: [], env: {} };

  private constructor(
    private readonly image: string,
    private readonly network: StartedNetwork,
    private readonly workDir: string,
  ) {
    this.runsDir = path.join(workDir, 'runs');
  }

  static async create(image: string, options: { secure?: boolean } = {}): Promise<DockerCluster> {
    const workDir = mkdtempSync(path.join(tmpdir(), 'ringtrain-containers-'));
    const cluster = new DockerCluster(image, await new Network().start(), workDir);
    // The image runs as uid 1000; the mount must be writable whoever runs the tests.
    mkdirSync(cluster.runsDir);
    chmodSync(cluster.runsDir, 0o777);
    if (options.secure === true) cluster.security = secureMounts(workDir);
    return cluster;
  }

  /** Starts the coordinator with `jobYaml`, waiting until its control port accepts connections. */
  async startCoordinator(jobYaml: string, expectWorkers: number, outName: string): Promise<StartedTestContainer> {
    const jobFile = path.join(this.workDir, `${outName}.yaml`);
    writeFileSync(jobFile, jobYaml);
    const container = this.container(COORDINATOR_ALIAS, [
      { source: jobFile, target: JOB_PATH, mode: 'ro' },
      { source: this.runsDir, target: '/runs', mode: 'rw' },
    ])
      .withExposedPorts(CONTROL_PORT)
      .withCommand([
        'coordinator',
        JOB_PATH,
        '--port',
        String(CONTROL_PORT),
        '--host',
        '0.0.0.0',
        '--expect-workers',
        String(expectWorkers),
        '--out',
        `/runs/${outName}`,
        // As in deploy/k8s: a restarted container with this same command continues the run.
        '--resume-if-exists',
        '--runs-dir',
        '/runs',
      ])
      .withWaitStrategy(Wait.forSuccessfulCommand(CONTROL_PORT_OPEN));
    return this.start(COORDINATOR_ALIAS, container);
  }

  /** Starts worker `alias`, which advertises itself to its ring neighbours by that alias. */
  async startWorker(alias: string): Promise<StartedTestContainer> {
    const container = this.container(alias).withCommand([
      'worker',
      '--coordinator',
      `${COORDINATOR_ALIAS}:${CONTROL_PORT}`,
      '--host',
      alias,
      // Without TLS a worker binds loopback unless told otherwise; its neighbours are other containers.
      '--bind',
      '0.0.0.0',
      '--data-port',
      String(DATA_PORT),
    ]);
    return this.start(alias, container);
  }

  /**
   * Starts a second container on the run directory's mount, as deploy/k8s/fetch's reader pod
   * does after a run: `command` replaces the image's entrypoint, `/runs` is mounted as given.
   */
  async startReader(alias: string, command: string[], readOnly: boolean): Promise<StartedTestContainer> {
    const container = this.container(alias, [
      { source: this.runsDir, target: '/runs', mode: readOnly ? 'ro' : 'rw' },
    ]).withEntrypoint(command);
    return this.start(alias, container);
  }

  /** Runs `command` in a started container, as `kubectl exec` does: its exit status and raw stdout. */
  exec(alias: string, command: string[]): { status: number; stdout: Buffer; stderr: string } {
    const result = spawnSync('docker', ['exec', this.require(alias).getId(), ...command], {
      maxBuffer: 256 * 1024 * 1024,
    });
    return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr.toString() };
  }

  /** The container's exit code once it stops; after `timeoutMs`, an error carrying its last output. */
  async exitCode(alias: string, timeoutMs = 300_000): Promise<number> {
    const client = await getContainerRuntimeClient();
    const exited = client.container.getById(this.require(alias).getId()).wait() as Promise<{ StatusCode: number }>;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(new Error(`${alias} still runs after ${timeoutMs} ms; its last output:\n${this.logTail(alias)}`));
      }, timeoutMs);
    });
    try {
      return (await Promise.race([exited, timedOut])).StatusCode;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Kills a container at once (SIGKILL), as a node failure would. */
  async kill(alias: string): Promise<void> {
    const client = await getContainerRuntimeClient();
    await client.container.getById(this.require(alias).getId()).kill({ signal: 'SIGKILL' });
  }

  /** Cuts a container off the cluster network (no RST: its peers just stop hearing from it). */
  disconnect(alias: string): void {
    execFileSync('docker', ['network', 'disconnect', '--force', this.network.getName(), this.require(alias).getId()], {
      stdio: 'ignore',
    });
  }

  /** The last lines a container printed, for failure messages. */
  logTail(alias: string, lines = 40): string {
    return (this.logs.get(alias) ?? []).slice(-lines).join('');
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.containers.values()].map((c) => c.stop({ remove: true, timeout: 0 })));
    await Promise.allSettled([this.network.stop()]);
    rmSync(this.workDir, { recursive: true, force: true });
  }

  /** A container on the cluster's network with `mounts` (plus the TLS files of a secure cluster). */
  private container(alias: string, mounts: BindMount[] = []): GenericContainer {
    const lines: string[] = [];
    this.logs.set(alias, lines);
    return new GenericContainer(this.image)
      .withNetwork(this.network)
      .withNetworkAliases(alias)
      .withBindMounts([...this.security.mounts, ...mounts])
      .withEnvironment({ RINGTRAIN_LOG_LEVEL: 'info', ...this.security.env })
      .withLogConsumer((stream) => {
        stream.on('data', (line: Buffer | string) => {
          lines.push(String(line));
          if (lines.length > MAX_LOG_LINES) lines.shift();
        });
      });
  }

  private async start(alias: string, container: GenericContainer): Promise<StartedTestContainer> {
    const started = await container.start();
    this.containers.set(alias, started);
    return started;
  }

  private require(alias: string): StartedTestContainer {
    const started = this.containers.get(alias);
    if (started === undefined) throw new Error(`no container "${alias}" in this cluster`);
    return started;
  }
}

/** Certificates and a token for every container, as deploy/k8s's Secret provides them. */
function secureMounts(workDir: string): { mounts: BindMount[]; env: Record<string, string> } {
  const made = makeCerts(path.join(workDir, 'tls'), [COORDINATOR_ALIAS]);
  // The containers run as uid 1000, not as the owner of these test-only files.
  chmodSync(made.dir, 0o755);
  for (const file of Object.values(made.files)) chmodSync(file, 0o644);
  return {
    mounts: [{ source: made.dir, target: TLS_DIR, mode: 'ro' }],
    env: {
      RINGTRAIN_TLS_CA: `${TLS_DIR}/ca.pem`,
      RINGTRAIN_TLS_CERT: `${TLS_DIR}/cert.pem`,
      RINGTRAIN_TLS_KEY: `${TLS_DIR}/key.pem`,
      RINGTRAIN_TOKEN: readFileSync(made.files.token, 'utf8').trim(),
    },
  };
}
