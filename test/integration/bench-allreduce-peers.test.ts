// `bench allreduce --peer gloo` and `--link`: row counts, kinds and verification, the skip lines
// where torch or root is missing, and that emulated links leave no network namespace behind, even
// when the benchmark is stopped by a signal. Never speed: the peer's and the links' figures are
// printed, not asserted.
import { spawn, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { labUnavailable } from '../../bench/link-lab.js';
import { findTorchPython } from '../../bench/pytorch-peer.js';
import { CLI, runCli, tempDir } from '../helpers/cli.js';

interface Row {
  kind: string;
  threads?: number;
  bytes: number;
  workers: number;
  busbwGBps: number;
  vsGloo?: number;
  link?: string;
  busbwOverLink?: number;
  verified: boolean;
}

const TINY = ['--iters', '2', '--warmup', '1', '--tcp-bytes', '4MiB', '--tcp-runs', '1'];
const SIGNAL_WAIT_MS = 120_000;

/** Namespaces named the way the link lab names them (rt<pid>-<rank>). */
function labNamespaces(): string[] {
  const text = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  return text
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => /^rt\d+-\d+$/.test(name));
}

/** Root-namespace devices named the way the link lab names them (its bridge and outer veth ends). */
function labLinks(): string[] {
  const text = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' });
  return [...text.matchAll(/^\d+: ([^:@\s]+)/gm)].map((m) => m[1] ?? '').filter((d) => /^rt\d+(br|o\d+)$/.test(d));
}

describe('bench allreduce --peer gloo', () => {
  it('measures gloo with one thread and its default beside ringtrain at every size, or says why not', async () => {
    const json = path.join(tempDir('ringtrain-gloo-'), 'rows.json');
    const sizes = [4096, 65536];
    const result = await runCli([
      'bench',
      'allreduce',
      '--peer',
      'gloo',
      '--workers',
      '2',
      '--sizes',
      '4KiB,64KiB',
      ...TINY,
      '--json',
      json,
    ]);
    expect(result.code, result.stderr).toBe(0);
    const rows = JSON.parse(readFileSync(json, 'utf8')) as Row[];
    const ring = rows.filter((r) => r.kind === 'ringtrain');
    expect(ring.map((r) => r.bytes)).toEqual(sizes);
    for (const row of rows) expect(row).toMatchObject({ workers: 2, verified: true });
    const gloo = rows.filter((r) => r.kind === 'gloo');
    if ((await findTorchPython()) === undefined) {
      expect(result.stdout).toMatch(/# gloo peer skipped: no Python with torch and gloo/);
      expect(gloo).toHaveLength(0);
      return;
    }
    expect(result.stdout).toMatch(/gloo-1t busbw +gloo busbw +vs gloo/);
    // One thread per rank, then torch's default, each at every size.
    expect(gloo.map((r) => r.bytes)).toEqual([...sizes, ...sizes]);
    expect(gloo[0]?.threads).toBe(1);
    for (const row of [...gloo, ...ring]) expect(row.busbwGBps).toBeGreaterThan(0);
    for (const row of ring) expect(row.vsGloo).toBeGreaterThan(0);
  });

  it('refuses an unknown peer and a malformed --link with one ringtrain: line, exit 2', async () => {
    const peer = await runCli(['bench', 'allreduce', '--peer', 'nccl']);
    expect(peer.code).toBe(2);
    expect(peer.stderr).toMatch(/^ringtrain: .*--peer/m);
    const link = await runCli(['bench', 'allreduce', '--link', '1gbps']);
    expect(link.code).toBe(2);
    expect(link.stderr).toMatch(/^ringtrain: .*--link: "1gbps" is not RATE\[,DELAY\]/m);
  });
});

describe('bench allreduce --link', () => {
  const unavailable = labUnavailable();

  it('says it is skipped without root or iproute2', async () => {
    // As root, iproute2 is taken away instead: a PATH without `ip` and `tc` (node runs by its own path).
    const result = await runCli(['bench', 'allreduce', '--link', '1gbit', '--sizes', '4KiB', ...TINY], {
      env: { PATH: tempDir('ringtrain-no-iproute2-') },
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(
      /# skipped: --link places each rank in its own network namespace, and (it needs root|the `ip` and `tc` commands \(iproute2\) are not installed)/,
    );
  });

  it.runIf(unavailable === undefined)(
    'runs each world size in its own namespaces behind shaped links and leaves none behind',
    async () => {
      const before = [...labNamespaces(), ...labLinks()];
      const json = path.join(tempDir('ringtrain-link-'), 'rows.json');
      const result = await runCli([
        'bench',
        'allreduce',
        '--link',
        '1gbit,100us',
        '--workers',
        '2,3',
        '--sizes',
        '4KiB,64KiB',
        ...TINY,
        '--json',
        json,
      ]);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout.match(/^# link: \d network namespaces on one bridge/gm)).toHaveLength(2);
      expect(result.stdout).toMatch(/100 us (added each way \(netem\)|NOT emulated: this kernel has no sch_netem)/);
      const rows = JSON.parse(readFileSync(json, 'utf8')) as Row[];
      expect(rows.map((r) => [r.workers, r.bytes])).toEqual([
        [2, 4096],
        [2, 65536],
        [3, 4096],
        [3, 65536],
      ]);
      for (const row of rows) {
        expect(row).toMatchObject({ kind: 'ringtrain', link: '1gbit,100us', verified: true });
        expect(row.busbwOverLink).toBeGreaterThan(0);
      }
      expect([...labNamespaces(), ...labLinks()].filter((name) => !before.includes(name))).toEqual([]);
    },
  );

  it.runIf(unavailable === undefined)('removes its namespaces and links when stopped by SIGTERM mid-run', async () => {
    const before = [...labNamespaces(), ...labLinks()];
    const child = spawn(
      process.execPath,
      [
        CLI,
        'bench',
        'allreduce',
        '--link',
        '10mbit',
        '--workers',
        '2',
        '--sizes',
        '4KiB,4MiB',
        '--iters',
        '50',
        '--warmup',
        '1',
        '--tcp-bytes',
        '4MiB',
        '--tcp-runs',
        '1',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    const exited = new Promise<NodeJS.Signals | number | null>((resolve) =>
      child.on('exit', (code, signal) => resolve(signal ?? code)),
    );
    // Stop it once a ring size has been measured inside the namespaces (the 4 MiB size at 10 Mbit/s takes seconds).
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no row within ${SIGNAL_WAIT_MS} ms: ${stdout}`)),
        SIGNAL_WAIT_MS,
      );
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        if (/^ +4 KiB /m.test(stdout)) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    expect(labNamespaces().filter((name) => !before.includes(name)).length).toBe(2);
    child.kill('SIGTERM');
    expect(await exited).toBe('SIGTERM');
    expect([...labNamespaces(), ...labLinks()].filter((name) => !before.includes(name))).toEqual([]);
  });
});
