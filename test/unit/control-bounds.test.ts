// Bounded resources per control connection (issue 16 §4), against the real gRPC control server on
// 127.0.0.1:0: a message larger than the largest legitimate one is refused, a huge host name is
// capped before it is stored or logged, and blob chunks nobody asked for are dropped (a fetch the
// session asked for is bounded, in order, and freed when it ends).
import * as grpc from '@grpc/grpc-js';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { WorkerMessage } from '../../proto/generated/ringtrain/v1/WorkerMessage.js';
import { ControlServer } from '../../coordinator/session/control-server.js';
import type { WorkerSession } from '../../coordinator/session/worker-session.js';
import {
  BLOB_CHUNK_BYTES,
  COORDINATOR_MAX_RECEIVE_BYTES,
  MAX_ADDRESS_CHARS,
  MAX_CLAIMED_GENERATION,
} from '../../shared/control-limits.js';
import { loadProto } from '../../shared/proto.js';

const logLines: string[] = [];
const logger = pino(
  { level: 'debug' },
  new Writable({
    write(chunk: Buffer, _encoding, done) {
      logLines.push(chunk.toString());
      done();
    },
  }),
);

let server: ControlServer | undefined;
const clients: grpc.Client[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  await server?.close(500);
  server = undefined;
  logLines.length = 0;
});

/** A server whose sessions are collected as they say Hello. */
async function startServer(): Promise<{ sessions: WorkerSession[]; next: () => Promise<WorkerSession> }> {
  const sessions: WorkerSession[] = [];
  const waiting: Array<(s: WorkerSession) => void> = [];
  server = await ControlServer.start({
    host: '127.0.0.1',
    port: 0,
    logger,
    onSession: (session) => {
      sessions.push(session);
      waiting.shift()?.(session);
    },
  });
  let taken = 0;
  const next = (): Promise<WorkerSession> => {
    const have = sessions[taken];
    taken++;
    return have !== undefined ? Promise.resolve(have) : new Promise((resolve) => waiting.push(resolve));
  };
  return { sessions, next };
}

function openStream(): grpc.ClientDuplexStream<WorkerMessage, unknown> {
  const Control = loadProto().ringtrain.v1.Control;
  const client = new Control(`127.0.0.1:${server?.port ?? 0}`, grpc.credentials.createInsecure());
  clients.push(client);
  const stream = client.Session();
  stream.on('error', () => undefined);
  return stream;
}

const hello = (host: string): WorkerMessage => ({
  hello: { host, dataAddress: '127.0.0.1:1', pid: 4242, jobHash: '', gpuIndex: -1, rankHint: -1, version: 't' },
});

describe('the control server', () => {
  it('refuses a message larger than the largest legitimate one, and keeps serving', async () => {
    const { next } = await startServer();
    const stream = openStream();
    const status = new Promise<grpc.StatusObject>((resolve) => stream.on('status', resolve));
    stream.write(hello('x'.repeat(COORDINATOR_MAX_RECEIVE_BYTES + 1)));
    expect((await status).code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    openStream().write(hello('after'));
    expect((await next()).hello.host).toBe('after');
  });

  it('bounds a claimed generation, so the next one cannot wrap around', async () => {
    const { next } = await startServer();
    const claim = hello('w');
    if (claim.hello) claim.hello.generation = 0xffffffff;
    openStream().write(claim);
    expect((await next()).hello.generation).toBe(MAX_CLAIMED_GENERATION);
  });

  it('refuses streams beyond 64 that wait for their hello, and frees their places when they go', async () => {
    const { next } = await startServer();
    const silent = Array.from({ length: 70 }, () => openStream());
    const statuses = silent.map((s) => new Promise<grpc.StatusObject>((resolve) => s.on('status', resolve)));
    const refused = await Promise.all(statuses.slice(64));
    expect(refused.every((st) => st.code === grpc.status.RESOURCE_EXHAUSTED)).toBe(true);
    for (const s of silent.slice(0, 64)) s.cancel();
    await Promise.all(statuses.slice(0, 64));
    openStream().write(hello('after the flood'));
    expect((await next()).hello.host).toBe('after the flood');
  });

  it('caps a long host name (and its newlines) before storing or logging it', async () => {
    const { next } = await startServer();
    const stream = openStream();
    stream.write(hello(`evil\n${'h'.repeat(512 * 1024)}`));
    const session = await next();
    expect(session.hello.host.length).toBeLessThan(MAX_ADDRESS_CHARS + 50);
    expect(session.hello.host).not.toContain('\n');
    expect(session.hello.generation).toBe(0);
    // A line that names the peer: the unsolicited chunk below is logged with its label.
    stream.write({ blobChunk: { requestId: 1, offset: 0, totalBytes: 1, data: Buffer.alloc(1), last: true } });
    await until(() => session.unsolicitedChunks === 1);
    const line = logLines.find((l) => l.includes('nobody asked for'));
    expect(line).toBeDefined();
    expect(line?.length ?? 0).toBeLessThan(1_000);
  });

  it('drops blob chunks nobody asked for, and holds nothing for them', async () => {
    const { next } = await startServer();
    const stream = openStream();
    stream.write(hello('w'));
    const session = await next();
    const chunks = 40;
    for (let i = 0; i < chunks; i++)
      stream.write({
        blobChunk: {
          requestId: 99,
          offset: i * BLOB_CHUNK_BYTES,
          totalBytes: 1 << 30,
          data: Buffer.alloc(BLOB_CHUNK_BYTES),
          last: false,
        },
      });
    await until(() => session.unsolicitedChunks === chunks);
    expect(session.pendingBlobBytes).toBe(0);
    // Only one warning for the lot.
    expect(logLines.filter((l) => l.includes('nobody asked for'))).toHaveLength(1);
  });

  it('takes a blob it asked for in order and within its bound; a session that ends frees it', async () => {
    const { next } = await startServer();
    const stream = openStream();
    stream.write(hello('w'));
    const session = await next();
    const tooBig = session.fetchBlob(5, 'state', 60_000, 2 * BLOB_CHUNK_BYTES);
    for (let i = 0; i < 3; i++)
      stream.write({
        blobChunk: { requestId: 5, offset: i * BLOB_CHUNK_BYTES, totalBytes: 0, data: Buffer.alloc(BLOB_CHUNK_BYTES) },
      });
    await expect(tooBig).rejects.toThrow(/larger than the 2097152 bytes allowed/);
    const outOfOrder = session.fetchBlob(6, 'state', 60_000);
    stream.write({ blobChunk: { requestId: 6, offset: 7, totalBytes: 0, data: Buffer.alloc(8), last: true } });
    await expect(outOfOrder).rejects.toThrow(/offset 7, expected 0/);
    const unfinished = session.fetchBlob(7, 'state', 60_000);
    stream.write({ blobChunk: { requestId: 7, offset: 0, totalBytes: 0, data: Buffer.alloc(BLOB_CHUNK_BYTES) } });
    await until(() => session.pendingBlobBytes === BLOB_CHUNK_BYTES);
    stream.end();
    await expect(unfinished).rejects.toThrow();
    expect(session.pendingBlobBytes).toBe(0);
  });
});

/** Polls `condition` (bounded: 2,000 polls). */
async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 2_000 && !condition(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(condition()).toBe(true);
}
