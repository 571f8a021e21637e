// The ring's data plane under mutual TLS and a job token, on 127.0.0.1:0 in this process: a ring
// with both trains; a peer without TLS, with a certificate from another CA, or without the token
// is closed having received nothing, and the data port's log names its address.
import * as net from 'node:net';
import * as tls from 'node:tls';
import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { makeCerts } from '../../shared/security/make-certs.js';
import { resolveSecurity, type JobSecurity } from '../../shared/security/job-security.js';
import { controlFrame, FrameKind } from '../../worker/transport/frame.js';
import { TcpRingCommunicator, TcpRingServer } from '../../worker/transport/ring-communicator.js';
import { removeTempDirs, tempDir } from '../helpers/cli.js';

const TIMEOUT_MS = 30_000;
const dir = tempDir('ringtrain-ring-security-');
const job = makeCerts(`${dir}/job`, []);
const other = makeCerts(`${dir}/other`, []);
afterAll(() => removeTempDirs());

function securityOf(files: typeof job.files, withToken = true): JobSecurity {
  return resolveSecurity(
    { ca: files.ca, cert: files.cert, key: files.key, ...(withToken ? { tokenFile: files.token } : {}) },
    {},
    undefined,
  );
}

const secured = securityOf(job.files);
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A data port whose warnings are kept, one parsed JSON object per line. */
async function startServer(
  security: JobSecurity,
): Promise<{ server: TcpRingServer; logs: Array<Record<string, unknown>> }> {
  const logs: Array<Record<string, unknown>> = [];
  const logger = pino(
    { level: 'warn' },
    { write: (line: string) => logs.push(JSON.parse(line) as Record<string, unknown>) },
  );
  const server = await TcpRingServer.start({ host: '127.0.0.1', port: 0, logger, security, sniffTimeoutMs: 5_000 });
  cleanups.push(() => server.close());
  return { server, logs };
}

/** Resolves with every byte the socket received, once it is closed. */
function received(socket: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => undefined);
  return new Promise((resolve) => socket.once('close', () => resolve(Buffer.concat(chunks))));
}

describe('ring data plane with mutual TLS and a job token', () => {
  it('all-reduces between two ranks that both present them', async () => {
    const servers = [(await startServer(secured)).server, (await startServer(secured)).server];
    const comms = await Promise.all(
      servers.map((server, rank) =>
        TcpRingCommunicator.connect({
          server,
          rank,
          worldSize: 2,
          generation: 1,
          leftAddress: `127.0.0.1:${servers[1 - rank]!.port}`,
          chunkBytes: 4096,
          collectiveTimeoutMs: TIMEOUT_MS,
          logger: pino({ level: 'silent' }),
        }),
      ),
    );
    for (const comm of comms) cleanups.push(() => comm.close());
    // Large enough for the ring path (several chunks), small enough to check every element.
    const buffers = [0, 1].map((rank) => Float32Array.from({ length: 10_000 }, (_, i) => i * (rank + 1)));
    await Promise.all(comms.map((comm, rank) => comm.allReduce(buffers[rank]!, 0)));
    for (const buffer of buffers) expect(buffer.every((v, i) => v === i * 3)).toBe(true);
  });

  it('closes a plaintext connection that speaks the ring protocol, sending nothing', async () => {
    const { server, logs } = await startServer(secured);
    server.expect(1, 0);
    const socket = net.connect({ host: '127.0.0.1', port: server.port });
    const bytes = received(socket);
    socket.once('connect', () => socket.write(controlFrame(FrameKind.handshake, 1, 0, 'guess')));
    expect((await bytes).byteLength).toBe(0);
    expect(
      logs.some((l) => String(l['msg']).includes('no mutual TLS') && String(l['peer']).startsWith('127.0.0.1:')),
    ).toBe(true);
  });

  it('refuses a certificate from another CA', async () => {
    const { server, logs } = await startServer(secured);
    server.expect(1, 0);
    const material = securityOf(other.files).tls!;
    const socket = tls.connect({
      host: '127.0.0.1',
      port: server.port,
      ca: material.ca,
      cert: material.cert,
      key: material.key,
      rejectUnauthorized: false,
    });
    const bytes = received(socket);
    socket.once('secureConnect', () => socket.write(controlFrame(FrameKind.handshake, 1, 0, secured.token)));
    expect((await bytes).byteLength).toBe(0);
    await expect(server.waitForRight(1, 100)).rejects.toThrow();
    expect(logs.some((l) => String(l['msg']).includes('no mutual TLS'))).toBe(true);
  });

  it.each([
    { name: 'no token', token: undefined },
    { name: 'a wrong token', token: 'x'.repeat(43) },
  ])('closes a TLS peer with $name having sent it nothing, and logs its address', async ({ token }) => {
    const { server, logs } = await startServer(secured);
    server.expect(1, 0);
    const material = secured.tls!;
    const socket = tls.connect({
      host: '127.0.0.1',
      port: server.port,
      ca: material.ca,
      cert: material.cert,
      key: material.key,
      checkServerIdentity: () => undefined,
    });
    const bytes = received(socket);
    let localPort = -1;
    socket.once('secureConnect', () => {
      localPort = socket.localPort ?? -1;
      socket.write(controlFrame(FrameKind.handshake, 1, 0, token));
    });
    expect((await bytes).byteLength).toBe(0);
    await expect(server.waitForRight(1, 100)).rejects.toThrow();
    const refusal = logs.find((l) => String(l['msg']).includes('wrong or missing job token'));
    expect(refusal?.['peer']).toBe(`127.0.0.1:${localPort}`);
  });

  it('without TLS, still closes a handshake without the token and sends nothing', async () => {
    const { server, logs } = await startServer({ token: secured.token! });
    server.expect(1, 0);
    const socket = net.connect({ host: '127.0.0.1', port: server.port });
    const bytes = received(socket);
    // A frame of the wrong kind first would draw a REFUSE from an open port: here it draws nothing.
    socket.once('connect', () => socket.write(controlFrame(FrameKind.handshake, 1, 0)));
    expect((await bytes).byteLength).toBe(0);
    expect(logs.some((l) => String(l['msg']).includes('wrong or missing job token'))).toBe(true);
  });
});
