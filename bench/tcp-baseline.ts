// The ceiling the ring is measured against: raw TCP bandwidth between two processes on this
// machine. This process listens and blasts one big reused buffer through loopback; a child
// (`ringtrain bench tcp-sink`) reads into one reused buffer and acknowledges each run with a
// byte. Best of a few runs, in decimal GB/s, one direction of one socket.
import * as net from 'node:net';
import { RingtrainError } from '../shared/errors.js';
import { BenchChild } from './bench-child.js';
import { gigabytesPerSecond } from './units.js';

const WRITE_BYTES = 4 * 1024 * 1024;
const READ_BUFFER_BYTES = 1024 * 1024;
const TIMEOUT_MS = 120_000;

export interface TcpBaseline {
  /** Best run. */
  gigabytesPerSecond: number;
  runs: number[];
  bytesPerRun: number;
}

export async function measureTcpBaseline(bytesPerRun: number, runs: number): Promise<TcpBaseline> {
  const server = net.createServer({ noDelay: true });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const sink = BenchChild.spawn('tcp sink', [
    'bench',
    'tcp-sink',
    '--port',
    String(port),
    '--bytes',
    String(bytesPerRun),
    '--runs',
    String(runs),
  ]);
  try {
    const socket = await Promise.race([
      accepted,
      sink.exited.then(() => Promise.reject(new RingtrainError('the tcp sink exited before connecting'))),
    ]);
    const results: number[] = [];
    const payload = Buffer.alloc(WRITE_BYTES, 0x5a);
    for (let run = 0; run < runs; run++) results.push(await blast(socket, payload, bytesPerRun));
    socket.end();
    await sink.next('done', TIMEOUT_MS);
    return { gigabytesPerSecond: Math.max(...results), runs: results, bytesPerRun };
  } finally {
    sink.kill();
    server.close();
  }
}

/** Sends `total` bytes and waits for the sink's one-byte acknowledgement; returns GB/s. */
async function blast(socket: net.Socket, payload: Buffer, total: number): Promise<number> {
  const acknowledged = new Promise<void>((resolve, reject) => {
    socket.once('data', () => resolve());
    socket.once('close', () => reject(new RingtrainError('the tcp sink closed the connection mid-run')));
  });
  const started = performance.now();
  for (let sent = 0; sent < total;) {
    const piece = Math.min(payload.byteLength, total - sent);
    sent += piece;
    if (!socket.write(piece === payload.byteLength ? payload : payload.subarray(0, piece))) {
      await new Promise<void>((resolve) => socket.once('drain', resolve));
    }
  }
  await acknowledged;
  socket.removeAllListeners('close');
  return gigabytesPerSecond(total, (performance.now() - started) / 1000);
}

/** Child side: reads `runs` × `bytes` into one reused buffer, acknowledging each run. */
export async function runTcpSink(options: {
  port: number;
  bytes: number;
  runs: number;
}): Promise<{ received: number }> {
  let received = 0;
  let inRun = 0;
  let socket: net.Socket | undefined;
  const buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  await new Promise<void>((resolve, reject) => {
    socket = net.connect({
      host: '127.0.0.1',
      port: options.port,
      noDelay: true,
      onread: {
        buffer,
        callback: (bytes: number): boolean => {
          received += bytes;
          inRun += bytes;
          if (inRun >= options.bytes) {
            inRun -= options.bytes;
            socket!.write('k');
          }
          return true;
        },
      },
    });
    socket.on('error', reject);
    socket.on('end', () => resolve());
  });
  socket?.destroy();
  return { received };
}
