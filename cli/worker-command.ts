// `ringtrain worker`: one worker process, or (with --local-workers / --gpus) a small launcher that
// starts one worker per GPU on this host, like torchrun's processes-per-node.
import * as os from 'node:os';
import { type Command, Option } from 'commander';
import { spawnWorkerProcess } from '../coordinator/local-workers.js';
import { runWorker } from '../worker/process/worker.js';
import { resolveCoordinatorTarget } from '../shared/coordinator-address.js';
import { FlagError, RingtrainError } from '../shared/errors.js';
import { componentLogger } from '../shared/logger.js';
import { exitWithParent } from '../shared/parent-watch.js';
import { jobHash, loadJob } from '../shared/job.js';
import { RUN_DEFAULTS, withRunDefaults } from '../shared/run-defaults.js';
import { resolveSecurity, securityEnv, type JobSecurity } from '../shared/security/job-security.js';
import { detectGpus, nonNegativeInt, parseGpus, positiveInt } from './arg-parsers.js';
import { addSecurityOptions, type SecurityFlags } from './security-options.js';

interface WorkerFlags extends SecurityFlags {
  coordinator?: string;
  host?: string;
  bind?: string;
  dataPort: number;
  rankHint?: number;
  job?: string;
  backend?: string;
  localWorkers?: number;
  gpus?: string;
  connectAttempts?: number;
  reconnectMs?: number;
  exitWithParent?: boolean;
}

export function addWorkerCommand(program: Command): void {
  const command = program
    .command('worker')
    .description(
      'run a worker that joins a coordinator (address from --coordinator, RINGTRAIN_COORDINATOR or MASTER_ADDR/MASTER_PORT)',
    )
    .option('--coordinator <host:port>', 'coordinator address')
    .option('--host <name>', 'host name or IP other workers use to reach this one (default: this host name)')
    .option(
      '--bind <addr>',
      'address the ring data server binds (default: 0.0.0.0 with TLS, else 127.0.0.1: give --bind 0.0.0.0 to take part from another host)',
    )
    .option('--data-port <P>', 'ring data server port (0 = any free port)', nonNegativeInt('--data-port', 65535), 0)
    .option('--rank-hint <R>', 'preferred rank (default: RANK or JOB_COMPLETION_INDEX)', nonNegativeInt('--rank-hint'))
    .option('--job <file>', "this worker's copy of the job; refused if it differs from the coordinator's")
    .addOption(
      new Option('--backend <name>', "override the job's backend on this worker").choices([
        'auto',
        'tensorflow',
        'wasm',
        'cpu',
      ]),
    )
    .option('--local-workers <N>', 'start N worker processes on this host', positiveInt('--local-workers'))
    .option('--gpus <list>', 'one worker process per GPU: all, a count, or indices like 0,2')
    .option(
      '--connect-attempts <N>',
      `attempts to reach the coordinator, with backoff from ${RUN_DEFAULTS.connectInitialDelayMs / 1000} s to ${RUN_DEFAULTS.connectMaxDelayMs / 1000} s (default: ${RUN_DEFAULTS.connectAttempts})`,
      positiveInt('--connect-attempts'),
    )
    .option(
      '--reconnect-ms <ms>',
      `after losing the coordinator, keep this worker's state and try to rejoin a restarted one for this long; 0 = exit (default: ${RUN_DEFAULTS.reconnectMs})`,
      nonNegativeInt('--reconnect-ms'),
    )
    .addOption(
      new Option(
        '--exit-with-parent',
        'exit when stdin closes (set by the coordinator or launcher that spawns this worker)',
      ).hideHelp(),
    );
  addSecurityOptions(command).action(async (given: WorkerFlags) => {
    const flags = withRunDefaults(given);
    const job = flags.job === undefined ? undefined : loadJob(flags.job);
    const security = resolveSecurity(
      { ca: flags.tlsCa, cert: flags.tlsCert, key: flags.tlsKey, tokenFile: flags.tokenFile },
      process.env,
      job?.security,
    );
    const bind = flags.bind ?? (security.tls !== undefined ? '0.0.0.0' : '127.0.0.1');
    if (flags.bind === undefined && flags.host !== undefined && bind === '127.0.0.1' && !isLoopback(flags.host))
      componentLogger('worker').warn(
        { host: flags.host, bind },
        `without TLS the ring data port listens on 127.0.0.1 only, so neighbours told to dial ${flags.host} cannot reach it; give --bind 0.0.0.0 (or TLS)`,
      );
    if (flags.exitWithParent === true) exitWithParent();
    const target = resolveCoordinatorTarget(flags.coordinator, process.env);
    const gpus = flags.gpus === undefined ? [] : parseGpus(flags.gpus, detectGpus);
    const processes = gpus.length > 0 ? gpus.length : (flags.localWorkers ?? 1);
    if (flags.localWorkers !== undefined && gpus.length > 0 && flags.localWorkers !== gpus.length) {
      throw new FlagError(
        `--local-workers ${flags.localWorkers}`,
        `disagrees with --gpus ${flags.gpus} (${gpus.length} GPUs); give one of them`,
      );
    }
    if (processes > 1 || gpus.length > 0) {
      await launchLocalWorkers(target.address, processes, gpus, { ...flags, bind }, security);
      return;
    }
    await runWorker({
      coordinator: target.address,
      bindHost: bind,
      advertiseHost: flags.host ?? os.hostname(),
      dataPort: flags.dataPort,
      rankHint: flags.rankHint ?? target.rankHint ?? -1,
      gpuIndex: visibleGpu(process.env),
      jobHash: job === undefined ? '' : jobHash(job),
      security,
      ...(flags.backend !== undefined ? { backendOverride: flags.backend } : {}),
      retry: {
        attempts: flags.connectAttempts,
        initialDelayMs: flags.connectInitialDelayMs,
        maxDelayMs: flags.connectMaxDelayMs,
      },
      signal: leaveSignal(),
      reconnectMs: flags.reconnectMs,
    });
  });
}

/** SIGTERM/SIGINT: leave cleanly (close the streams; the coordinator regroups without us), exit 0. */
function leaveSignal(): AbortSignal {
  const controller = new AbortController();
  const onSignal = (): void => {
    if (controller.signal.aborted) process.exit(0);
    controller.abort();
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  return controller.signal;
}

/** Starts one child `ringtrain worker` per GPU (or N plain ones) and waits for all of them. */
async function launchLocalWorkers(
  address: string,
  count: number,
  gpus: number[],
  flags: WorkerFlags & { bind: string; connectAttempts: number; reconnectMs: number },
  security: JobSecurity,
): Promise<void> {
  const children = Array.from({ length: count }, (_, i) => {
    const args = [
      '--coordinator',
      address,
      '--bind',
      flags.bind,
      '--connect-attempts',
      String(flags.connectAttempts),
      '--reconnect-ms',
      String(flags.reconnectMs),
    ];
    if (flags.host !== undefined) args.push('--host', flags.host);
    if (flags.job !== undefined) args.push('--job', flags.job);
    if (flags.backend !== undefined) args.push('--backend', flags.backend);
    // Each child presents this launcher's identity (resolved once, so the flags count too).
    return spawnWorkerProcess({ args, gpu: gpus[i], env: { ...process.env, ...securityEnv(security) } });
  });
  const forward = (signal: NodeJS.Signals): void => children.forEach((c) => c.kill(signal));
  process.on('SIGTERM', forward);
  process.on('SIGINT', forward);
  const codes = await Promise.all(
    children.map((c) => new Promise<number>((resolve) => c.on('exit', (code) => resolve(code ?? 1)))),
  );
  const failed = codes.filter((c) => c !== 0).length;
  if (failed > 0)
    throw new RingtrainError(`${failed} of ${count} local workers failed (exit codes ${codes.join(', ')})`);
}

/** The one GPU this process may use: a single index in CUDA_VISIBLE_DEVICES, else -1. */
function visibleGpu(env: NodeJS.ProcessEnv): number {
  const visible = env['CUDA_VISIBLE_DEVICES']?.trim() ?? '';
  return /^\d+$/.test(visible) ? Number(visible) : -1;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}
