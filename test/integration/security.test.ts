// Mutual TLS and the job token with real processes on 127.0.0.1: a secured run trains exactly as
// a plaintext one; workers without the token, with a wrong one, with a certificate from another
// CA or without TLS are refused with a clear line and a documented exit code, the coordinator's
// log names their address, and the run completes with the legitimate workers; no refusal names
// the job hash; without TLS, ports listen on loopback unless told otherwise.
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { jobHash, loadJob } from '../../shared/job.js';
import { makeCerts } from '../../shared/security/make-certs.js';
import { removeTempDirs, runCli, smallMnistJob, tempDir, waitForCoordinatorPort, writeJob } from '../helpers/cli.js';

const dir = tempDir('ringtrain-security-');
afterAll(() => removeTempDirs());
const certs = makeCerts(path.join(dir, 'certs'), []);
const strangers = makeCerts(path.join(dir, 'strangers'), []);
const tlsFlags = (files: typeof certs.files): string[] => [
  '--tls-ca',
  files.ca,
  '--tls-cert',
  files.cert,
  '--tls-key',
  files.key,
];
/** Few steps: what is checked is who may take part, not how well it trains. */
const job = writeJob(
  dir,
  smallMnistJob({ data: { format: 'mnist', limit: 400, split: { validation: 0.1, test: 0.1 } } }),
);
const hash = jobHash(loadJob(job));

/** Local address (hex, as in /proc/net/tcp) of the socket listening on `port`, once there is one (bounded). */
async function listeningAddress(port: number): Promise<string> {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (let i = 0; i < 600; i++) {
    for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
      const rows = readFileSync(table, 'utf8').trim().split('\n').slice(1);
      const row = rows.map((r) => r.trim().split(/\s+/)).find((c) => c[1]?.endsWith(`:${hexPort}`) && c[3] === '0A');
      if (row?.[1] !== undefined) return row[1].split(':')[0]!;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`nothing listened on port ${port}`);
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('ringtrain certs', () => {
  it('writes a CA, a certificate it signed for server and client use, a private key and a token', () => {
    const ca = new X509Certificate(readFileSync(certs.files.ca));
    const cert = new X509Certificate(readFileSync(certs.files.cert));
    expect(ca.ca).toBe(true);
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(cert.checkIssued(ca)).toBe(true);
    expect(cert.subjectAltName).toMatch(/DNS:localhost.*IP Address:127\.0\.0\.1/);
    expect(cert.verify(new X509Certificate(readFileSync(strangers.files.ca)).publicKey)).toBe(false);
    expect(statSync(certs.files.key).mode & 0o077).toBe(0);
    expect(statSync(certs.files.token).mode & 0o077).toBe(0);
    expect(readFileSync(certs.files.token, 'utf8').trim().length).toBeGreaterThanOrEqual(40);
  });

  it('refuses to overwrite a folder', async () => {
    const result = await runCli(['certs', '--out', path.join(dir, 'certs')]);
    expect(result.code).toBe(2);
    expect(result.stderr.trim()).toMatch(/^ringtrain: --out .*: already exists/);
  });
});

describe('a run with mutual TLS and a job token', () => {
  it('trains to the same parameters as the same run in plaintext', async () => {
    const plain = path.join(dir, 'plain-run');
    const secured = path.join(dir, 'tls-run');
    const [a, b] = await Promise.all([
      runCli(['train', job, '--out', plain]),
      runCli(['train', job, '--out', secured, ...tlsFlags(certs.files), '--token-file', certs.files.token]),
    ]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    expect(a.stdout).toMatch(/warning: this job is unauthenticated/);
    expect(b.stdout).not.toMatch(/warning/);
    // The workers' heartbeat threads dial with the same certificate and token (their failure is only a warning).
    expect(b.stderr).not.toMatch(/heartbeat/i);
    const weights = (run: string): Buffer => readFileSync(path.join(run, 'model', 'weights.bin'));
    expect(weights(secured).equals(weights(plain))).toBe(true);
  });

  it('refuses strangers with a clear line, names their address, and completes with its own 3 workers', async () => {
    const run = path.join(dir, 'cluster-run');
    const stop = new AbortController();
    const coordinator = runCli(
      [
        'coordinator',
        job,
        '--port',
        '0',
        '--host',
        '127.0.0.1',
        '--expect-workers',
        '3',
        '--out',
        run,
        ...tlsFlags(certs.files),
        '--token-file',
        certs.files.token,
      ],
      { signal: stop.signal },
    );
    const address = `127.0.0.1:${await waitForCoordinatorPort(run)}`;
    const worker = (extra: string[], env: NodeJS.ProcessEnv = {}): ReturnType<typeof runCli> =>
      runCli(['worker', '--coordinator', address, '--connect-attempts', '2', ...extra], { env });
    const other = writeJob(dir, smallMnistJob({ seed: 8 }), 'other-job.yaml');
    // One after another: each stranger is turned away before the real workers fill the seats.
    const refused = {
      noToken: await worker(tlsFlags(certs.files)),
      wrongToken: await worker(tlsFlags(certs.files), { RINGTRAIN_TOKEN: 'not-the-token-of-this-job' }),
      otherCa: await worker([...tlsFlags(strangers.files), '--token-file', certs.files.token]),
      plaintext: await worker(['--token-file', certs.files.token]),
      otherJob: await worker([...tlsFlags(certs.files), '--token-file', certs.files.token, '--job', other]),
    };
    const legit = [0, 1, 2].map(() =>
      worker([...tlsFlags(certs.files)], { RINGTRAIN_TOKEN: readFileSync(certs.files.token, 'utf8') }),
    );
    const results = await Promise.all(legit);
    const coord = await coordinator;
    stop.abort();
    for (const r of results) {
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).not.toMatch(/heartbeat/i);
    }
    expect(coord.code, coord.stderr).toBe(0);
    expect((JSON.parse(readFileSync(path.join(run, 'summary.json'), 'utf8')) as { worldSize: number }).worldSize).toBe(
      3,
    );
    expect(refused.noToken.code).toBe(6);
    expect(refused.noToken.stderr).toMatch(/asks for a job token and this worker has none \(UNAUTHENTICATED\)/);
    expect(refused.wrongToken.code).toBe(6);
    expect(refused.wrongToken.stderr).toMatch(/wrong job token \(UNAUTHENTICATED\)/);
    expect(refused.otherCa.code).toBe(5);
    expect(refused.otherCa.stderr).toMatch(/certificate comes from the coordinator's CA/);
    expect(refused.plaintext.code).toBe(5);
    expect(refused.plaintext.stderr).toMatch(/give this worker --tls-ca, --tls-cert and --tls-key/);
    expect(refused.otherJob.code).toBe(6);
    expect(refused.otherJob.stderr).toMatch(/JOB_HASH_MISMATCH/);
    // The coordinator's log names each refused caller's address.
    const refusals = coord.stderr.split('\n').filter((l) => l.includes('without the job token'));
    expect(refusals).toHaveLength(2);
    for (const line of refusals) expect(line).toMatch(/"peer":"127\.0\.0\.1:\d+"/);
    // Nothing a stranger saw names the job hash.
    for (const r of Object.values(refused)) expect(`${r.stdout}${r.stderr}`).not.toContain(hash);
  });
});

describe('listening addresses', () => {
  it('without TLS, the coordinator and a worker listen on loopback unless given an address', async () => {
    const run = path.join(dir, 'loopback-run');
    const stop = new AbortController();
    const coordinator = runCli(['coordinator', job, '--port', '0', '--expect-workers', '1', '--out', run], {
      signal: stop.signal,
    });
    const port = await waitForCoordinatorPort(run);
    expect(await listeningAddress(port)).toBe('0100007F');
    const dataPort = await freePort();
    const worker = runCli(
      ['worker', '--coordinator', '127.0.0.1:1', '--data-port', String(dataPort), '--connect-attempts', '3'],
      {
        signal: stop.signal,
      },
    );
    expect(await listeningAddress(dataPort)).toBe('0100007F');
    stop.abort();
    await Promise.all([coordinator, worker]);
  });

  it('with TLS, a worker listens on every address', async () => {
    const stop = new AbortController();
    const dataPort = await freePort();
    const worker = runCli(
      [
        'worker',
        '--coordinator',
        '127.0.0.1:1',
        '--data-port',
        String(dataPort),
        '--connect-attempts',
        '3',
        ...tlsFlags(certs.files),
      ],
      { signal: stop.signal },
    );
    expect(await listeningAddress(dataPort)).toMatch(/^0+$/);
    stop.abort();
    await worker;
  });
});
