// Emulated cluster links for `bench allreduce --link RATE[,DELAY]`: each rank runs in its own
// network namespace, joined to one bridge in the root namespace by a veth pair, as hosts hang
// off one switch. Both ends of every veth are shaped with `tc qdisc tbf` to RATE, so each rank
// has a full-duplex port of RATE each way; DELAY is added with netem where the kernel has
// sch_netem (checked by trying it), and said to be missing otherwise.
//
// Invariants:
//   - every namespace and link this lab creates carries the lab's own tag (the parent's pid), and
//     `close()` ends the ranks still inside them and deletes them all; it also runs on 'exit',
//     SIGINT and SIGTERM, so a failed or interrupted benchmark leaves nothing behind;
//   - every `ip`/`tc` call is bounded (IP_TIMEOUT_MS) and checked; the first failure tears the
//     lab down and names the command.
import { execFileSync } from 'node:child_process';
import { InvalidArgumentError } from 'commander';
import { RingtrainError } from '../shared/errors.js';

const IP_TIMEOUT_MS = 10_000;
const RATE_UNITS: Readonly<Record<string, number>> = { kbit: 1e3, mbit: 1e6, gbit: 1e9 };
const DELAY_UNITS: Readonly<Record<string, number>> = { us: 1, ms: 1e3 };
/** Largest ring the lab builds: one /24 of addresses, and a bound on setup time. */
export const MAX_LAB_RANKS = 64;

/** A shaped link: RATE (bits/s) and optional one-way DELAY (µs) per rank port. */
export interface LinkSpec {
  rateBitsPerSecond: number;
  delayUs?: number;
  /** As typed, for printing. */
  text: string;
}

/** "1gbit" or "1gbit,100us" (rates kbit|mbit|gbit, delays us|ms, as tc spells them). */
export function parseLinkSpec(text: string): LinkSpec {
  const fix = `--link: "${text}" is not RATE[,DELAY] like 1gbit or 1gbit,100us (rate in kbit/mbit/gbit, delay in us/ms)`;
  const [ratePart, delayPart, extra] = text.split(',').map((part) => part.trim().toLowerCase());
  const rate = /^(\d+(?:\.\d+)?)(kbit|mbit|gbit)$/.exec(ratePart ?? '');
  if (rate === null || extra !== undefined) throw new InvalidArgumentError(fix);
  const rateBitsPerSecond = Number(rate[1]) * RATE_UNITS[rate[2]!]!;
  if (!(rateBitsPerSecond >= 8_000)) throw new InvalidArgumentError(`--link: rate "${ratePart}" is below 8kbit`);
  if (delayPart === undefined) return { rateBitsPerSecond, text };
  const delay = /^(\d+(?:\.\d+)?)(us|ms)$/.exec(delayPart);
  if (delay === null) throw new InvalidArgumentError(fix);
  return { rateBitsPerSecond, delayUs: Number(delay[1]) * DELAY_UNITS[delay[2]!]!, text };
}

/** Why this process cannot build namespaces, or undefined when it can. */
export function labUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'it needs root (network namespaces and tc)';
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore', timeout: IP_TIMEOUT_MS });
    execFileSync('tc', ['-V'], { stdio: 'ignore', timeout: IP_TIMEOUT_MS });
  } catch {
    return 'the `ip` and `tc` commands (iproute2) are not installed';
  }
  return undefined;
}

/** One rank's place in the lab. */
export interface LabRank {
  namespace: string;
  /** This rank's address, reachable from every other rank. */
  address: string;
  /** The rank's interface inside its namespace (GLOO_SOCKET_IFNAME). */
  ifname: string;
}

export class LinkLab {
  readonly ranks: LabRank[] = [];
  /** Whether DELAY is applied (false: no delay asked, or the kernel has no sch_netem). */
  delayEmulated = false;
  private readonly tag: string;
  private readonly bridge: string;
  /** build() inserted an iptables FORWARD rule for the bridge (removed by close). */
  private forwardRule = false;
  private closed = false;
  private readonly onExit = (): void => this.close();
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    this.close();
    process.kill(process.pid, signal);
  };

  private constructor(readonly link: LinkSpec) {
    this.tag = `rt${process.pid}`;
    this.bridge = `${this.tag}br`;
  }

  /** Builds namespaces for `worldSize` ranks; the caller must `close()` (also done at exit). */
  static create(link: LinkSpec, worldSize: number): LinkLab {
    if (worldSize < 1 || worldSize > MAX_LAB_RANKS)
      throw new RingtrainError(`--link: world size ${worldSize} is outside 1..${MAX_LAB_RANKS}`);
    const lab = new LinkLab(link);
    process.once('exit', lab.onExit);
    process.once('SIGINT', lab.onSignal);
    process.once('SIGTERM', lab.onSignal);
    try {
      lab.build(worldSize);
    } catch (error) {
      lab.close();
      throw error;
    }
    return lab;
  }

  /** argv prefix that runs a command inside rank `rank`'s namespace. */
  prefix(rank: number): string[] {
    return ['ip', 'netns', 'exec', this.ranks[rank]!.namespace];
  }

  /** Names of this lab's namespaces still present (empty after close; see also `links`). */
  leftovers(): string[] {
    return listNamespaces().filter((name) => name.startsWith(`${this.tag}-`));
  }

  /** This lab's root-namespace devices still present: the bridge and the outer veth ends. */
  links(): string[] {
    try {
      const text = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8', timeout: IP_TIMEOUT_MS });
      return [...text.matchAll(/^\d+: ([^:@\s]+)/gm)]
        .map((match) => match[1] ?? '')
        .filter((device) => device === this.bridge || new RegExp(`^${this.tag}o\\d+$`).test(device));
    } catch {
      return [];
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    process.removeListener('exit', this.onExit);
    process.removeListener('SIGINT', this.onSignal);
    process.removeListener('SIGTERM', this.onSignal);
    // A rank still inside would keep its namespace alive after the name is gone: end it first.
    // Sockets with data still queued in tbf can keep a nameless namespace, and its veth pair,
    // alive for minutes, so each pair is deleted explicitly too.
    for (const name of this.leftovers()) for (const pid of namespacePids(name)) killQuietly(pid);
    for (const device of this.links()) tryIp(['link', 'delete', device]);
    for (const name of this.leftovers()) tryIp(['netns', 'delete', name]);
    tryIp(['link', 'delete', this.bridge]);
    if (this.forwardRule) tryRun('iptables', ['-D', 'FORWARD', ...this.forwardMatch()]);
  }

  /** The FORWARD rule that lets this bridge's frames through (see build). */
  private forwardMatch(): string[] {
    return ['-i', this.bridge, '-o', this.bridge, '-j', 'ACCEPT'];
  }

  private build(worldSize: number): void {
    const subnet = `10.${200 + (process.pid % 50)}.${(process.pid >> 6) % 250}`;
    run('ip', ['link', 'add', this.bridge, 'type', 'bridge']);
    // With br_netfilter loaded, bridged frames pass iptables' FORWARD chain, whose policy Docker
    // sets to DROP: the ranks could not reach each other. Accept this bridge's own traffic (where
    // iptables exists; without it nothing filters the bridge), and take the rule out in close().
    this.forwardRule = tryRun('iptables', ['-I', 'FORWARD', ...this.forwardMatch()]);
    run('ip', ['link', 'set', this.bridge, 'up']);
    for (let rank = 0; rank < worldSize; rank++) {
      const namespace = `${this.tag}-${rank}`;
      const outer = `${this.tag}o${rank}`;
      const ifname = `${this.tag}i${rank}`;
      const address = `${subnet}.${rank + 1}`;
      run('ip', ['netns', 'add', namespace]);
      this.ranks.push({ namespace, address, ifname });
      run('ip', ['link', 'add', outer, 'type', 'veth', 'peer', 'name', ifname, 'netns', namespace]);
      run('ip', ['link', 'set', outer, 'master', this.bridge, 'up']);
      run('ip', ['-n', namespace, 'link', 'set', 'lo', 'up']);
      run('ip', ['-n', namespace, 'addr', 'add', `${address}/24`, 'dev', ifname]);
      run('ip', ['-n', namespace, 'link', 'set', ifname, 'up']);
      this.shape([], outer); // bridge -> rank: the port's download
      this.shape(['-n', namespace], ifname); // rank -> bridge: its upload
    }
  }

  /** tbf at RATE on `dev`'s egress, under netem DELAY when asked and available. */
  private shape(where: string[], dev: string): void {
    const { rateBitsPerSecond, delayUs } = this.link;
    // Burst: at least 2 ms of traffic and 128 KiB (veth hands tbf GSO packets of up to 64 KiB).
    const burstBytes = Math.max(128 * 1024, Math.ceil((rateBitsPerSecond / 8) * 0.002));
    const tbf = ['tbf', 'rate', `${rateBitsPerSecond}bit`, 'burst', String(burstBytes), 'latency', '20ms'];
    let parent = ['root'];
    if (delayUs !== undefined && delayUs > 0) {
      const netem = tryRun('tc', [
        ...where,
        'qdisc',
        'add',
        'dev',
        dev,
        'root',
        'handle',
        '1:',
        'netem',
        'delay',
        `${delayUs}us`,
      ]);
      if (netem) {
        this.delayEmulated = true;
        parent = ['parent', '1:', 'handle', '2:'];
      }
    }
    run('tc', [...where, 'qdisc', 'add', 'dev', dev, ...parent, ...tbf]);
  }
}

function listNamespaces(): string[] {
  try {
    const text = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8', timeout: IP_TIMEOUT_MS });
    return text
      .split('\n')
      .map((line) => line.split(' ')[0] ?? '')
      .filter((name) => name !== '');
  } catch {
    return [];
  }
}

/** Processes in namespace `name`: only ranks this lab started there (`ip netns exec`). */
function namespacePids(name: string): number[] {
  try {
    const text = execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8', timeout: IP_TIMEOUT_MS });
    return text
      .split('\n')
      .map(Number)
      .filter((pid) => Number.isInteger(pid) && pid > 0 && pid !== process.pid);
  } catch {
    return [];
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function run(command: string, args: string[]): void {
  try {
    execFileSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: IP_TIMEOUT_MS });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim() ?? '';
    throw new RingtrainError(`--link: \`${command} ${args.join(' ')}\` failed: ${stderr || String(error)}`, {
      cause: error,
    });
  }
}

function tryRun(command: string, args: string[]): boolean {
  try {
    execFileSync(command, args, { stdio: 'ignore', timeout: IP_TIMEOUT_MS });
    return true;
  } catch {
    return false;
  }
}

function tryIp(args: string[]): void {
  tryRun('ip', args);
}
