// Where a worker finds its coordinator, and what its launcher says about its rank.
// Sources, highest precedence first: the --coordinator flag, RINGTRAIN_COORDINATOR, then the
// MASTER_ADDR + MASTER_PORT pair that Kubeflow's PyTorchJob sets. Rank and world size are only
// hints (the coordinator assigns the real ones): RANK (PyTorchJob) wins over
// JOB_COMPLETION_INDEX (Kubernetes Indexed Job); WORLD_SIZE is read as given.
// Empty environment variables count as unset, because manifests often template them to "".
import { isIPv4, isIPv6 } from 'node:net';
import { JobConfigError } from './errors.js';

export interface CoordinatorTarget {
  /** `host:port`, with IPv6 hosts in brackets: `[fd00::1]:7070`. */
  address: string;
  /** The flag or variable(s) the address came from, for log lines and errors. */
  source: string;
  rankHint?: number;
  worldSizeHint?: number;
}

const EXAMPLE = 'e.g. ringtrain-coordinator:7070, 10.0.0.5:7070 or [fd00::5]:7070';
const HOSTNAME_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

export function resolveCoordinatorTarget(flag: string | undefined, env: NodeJS.ProcessEnv): CoordinatorTarget {
  const target: CoordinatorTarget = resolveAddress(flag, env);
  const rank = readRankHint(env);
  const worldSize = readInteger(env, 'WORLD_SIZE', 1);
  if (rank !== undefined && worldSize !== undefined && rank.value >= worldSize) {
    throw new JobConfigError(rank.variable, [`${rank.value} must be below WORLD_SIZE (${worldSize})`]);
  }
  if (rank !== undefined) target.rankHint = rank.value;
  if (worldSize !== undefined) target.worldSizeHint = worldSize;
  return target;
}

function resolveAddress(flag: string | undefined, env: NodeJS.ProcessEnv): CoordinatorTarget {
  if (flag !== undefined) return { address: parseHostPort(flag, '--coordinator'), source: '--coordinator' };
  const explicit = nonEmpty(env, 'RINGTRAIN_COORDINATOR');
  if (explicit !== undefined) {
    return { address: parseHostPort(explicit, 'RINGTRAIN_COORDINATOR'), source: 'RINGTRAIN_COORDINATOR' };
  }
  const masterAddr = nonEmpty(env, 'MASTER_ADDR');
  const masterPort = nonEmpty(env, 'MASTER_PORT');
  if (masterAddr !== undefined && masterPort !== undefined) {
    const host = formatHost(masterAddr, 'MASTER_ADDR');
    return { address: `${host}:${parsePort(masterPort, 'MASTER_PORT')}`, source: 'MASTER_ADDR+MASTER_PORT' };
  }
  if (masterAddr !== undefined || masterPort !== undefined) {
    const missing = masterAddr === undefined ? 'MASTER_ADDR' : 'MASTER_PORT';
    throw new JobConfigError(missing, [
      `is unset but ${missing === 'MASTER_ADDR' ? 'MASTER_PORT' : 'MASTER_ADDR'} is set; set both`,
    ]);
  }
  throw new JobConfigError('--coordinator', [
    'no coordinator address: pass --coordinator HOST:PORT or set RINGTRAIN_COORDINATOR (or MASTER_ADDR and MASTER_PORT)',
  ]);
}

/** Validates `HOST:PORT` and returns it normalised; `variable` names the input in errors. */
export function parseHostPort(text: string, variable: string): string {
  const value = text.trim();
  if (value.includes('://')) throw malformed(variable, text, 'drop the scheme');
  const bracketed = /^\[([^\]]*)\]:([^:]*)$/.exec(value);
  if (bracketed !== null) {
    const [, ip = '', port = ''] = bracketed;
    if (!isIPv6(ip)) throw malformed(variable, text, `"${ip}" is not an IPv6 address`);
    return `[${ip}]:${parsePort(port, variable)}`;
  }
  const colon = value.lastIndexOf(':');
  if (colon < 0) throw malformed(variable, text, 'the port is missing');
  const host = value.slice(0, colon);
  if (host.includes(':')) throw malformed(variable, text, 'put an IPv6 address in brackets: [::1]:7070');
  return `${formatHost(host, variable, text)}:${parsePort(value.slice(colon + 1), variable)}`;
}

/** An IPv4 address, a hostname, or an IPv6 address (bare or bracketed, returned bracketed). */
function formatHost(host: string, variable: string, whole?: string): string {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (isIPv6(bare)) return `[${bare}]`;
  const ipv4Like = /^[0-9.]+$/.test(host);
  if (ipv4Like ? isIPv4(host) : isHostname(host)) return host;
  const why = `"${host}" is not ${ipv4Like ? 'an IPv4 address' : 'a valid host name'}`;
  throw whole === undefined ? new JobConfigError(variable, [why]) : malformed(variable, whole, why);
}

function isHostname(host: string): boolean {
  const name = host.endsWith('.') ? host.slice(0, -1) : host;
  return name.length > 0 && name.length <= 253 && name.split('.').every((label) => HOSTNAME_LABEL.test(label));
}

function parsePort(text: string, variable: string): number {
  const port = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(port >= 1 && port <= 65_535)) {
    throw new JobConfigError(variable, [`port "${text}" must be a whole number from 1 to 65535`]);
  }
  return port;
}

function readRankHint(env: NodeJS.ProcessEnv): { variable: string; value: number } | undefined {
  for (const variable of ['RANK', 'JOB_COMPLETION_INDEX']) {
    const value = readInteger(env, variable, 0);
    if (value !== undefined) return { variable, value };
  }
  return undefined;
}

function readInteger(env: NodeJS.ProcessEnv, variable: string, min: number): number | undefined {
  const text = nonEmpty(env, variable);
  if (text === undefined) return undefined;
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < min) {
    throw new JobConfigError(variable, [`"${text}" must be a whole number >= ${min}`]);
  }
  return value;
}

function nonEmpty(env: NodeJS.ProcessEnv, variable: string): string | undefined {
  const value = env[variable]?.trim();
  return value === undefined || value === '' ? undefined : value;
}

function malformed(variable: string, text: string, why: string): JobConfigError {
  return new JobConfigError(variable, [`"${text}" is not HOST:PORT (${why}); ${EXAMPLE}`]);
}
