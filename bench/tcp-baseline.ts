// The ceilings the ring is measured against: raw TCP bandwidth between two processes on this
// machine, in decimal GB/s per direction, best of a few runs.
//   - one-way: this process listens and blasts one big reused buffer through loopback; a child
//     (`ringtrain bench tcp-sink`) reads into one reused buffer and acknowledges each run with a
//     byte;
//   - bidirectional: the traffic of an N = 2 ring. Both processes send and receive at once, each
//     direction on its own connection read with `onread`, as the ring's links are. The child
//     starts sending its share of a run when the run's first bytes reach it. On 2 cores each core
//     does both kernel copies, so this is well below the one-way figure.
import * as net from 'node:net';
import { RingtrainError } from '../shared/errors.js';
import { BenchChild } from './bench-child.js';
import { gigabytesPerSecond } from './units.js';

const WRITE_BYTES = 4 * 1024 * 1024;
const READ_BUFFER_BYTES = 1024 * 1024;
const TIMEOUT_MS = 120_000;

export interface TcpBaseline {
  /** Best run, per direction. */
  gigabytesPerSecond: number;
  runs: number[];
  bytesPerRun: number;
}

export async function measureTcpBaseline(
  bytesPerRun: number,
  runs: number,
  bidirectional = false,
): Promise<TcpBaseline> {
  const server = net.createServer({ noDelay: true });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const sink = BenchChild.spawn(bidirectional ? 'tcp peer' : 'tcp sink', [
    'bench',
    'tcp-sink',
    '--port',
    String(port),
    '--bytes',
    String(bytesPerRun),
    '--runs',
    String(runs),
    ...(bidirectional ? ['--bidirectional'] : []),
  ]);
  let back: Counter | undefined;
  try {
    if (bidirectional) back = await countFrom(Number((await sink.next('listening', TIMEOUT_MS))['port']));
    const socket = await Promise.race([
      accepted,
      sink.exited.then(() => Promise.reject(new RingtrainError('the tcp sink exited before connecting'))),
    ]);
    const results: number[] = [];
    const payload = Buffer.alloc(WRITE_BYTES, 0x5a);
    for (let run = 0; run < runs; run++) {
      const returned = back?.reach((run + 1) * bytesPerRun) ?? Promise.resolve();
      const started = performance.now();
      await Promise.all([blast(socket, payload, bytesPerRun), returned]);
      results.push(gigabytesPerSecond(bytesPerRun, (performance.now() - started) / 1000));
    }
    socket.end();
    await sink.next('done', TIMEOUT_MS);
    return { gigabytesPerSecond: Math.max(...results), runs: results, bytesPerRun };
  } finally {
    back?.socket.destroy();
    sink.kill();
    server.close();
  }
}

/** Sends `total` bytes and waits for the sink's one-byte acknowledgement. */
async function blast(socket: net.Socket, payload: Buffer, total: number): Promise<void> {
  const acknowledged = new Promise<void>((resolve, reject) => {
    socket.once('data', () => resolve());
    socket.once('close', () => reject(new RingtrainError('the tcp sink closed the connection mid-run')));
  });
  await send(socket, payload, total);
  await acknowledged;
  socket.removeAllListeners('close');
}

async function send(socket: net.Socket, payload: Buffer, total: number): Promise<void> {
  for (let sent = 0; sent < total;) {
    const piece = Math.min(payload.byteLength, total - sent);
    sent += piece;
    if (!socket.write(piece === payload.byteLength ? payload : payload.subarray(0, piece))) {
      await new Promise<void>((resolve) => socket.once('drain', resolve));
    }
  }
}

interface Counter {
  socket: net.Socket;
  /** Resolves once `bytes` have been received in all. */
  reach(bytes: number): Promise<void>;
}

/** Dials the peer's back channel and counts what arrives, reading into one reused buffer. */
async function countFrom(port: number): Promise<Counter> {
  let received = 0;
  let goal = Infinity;
  let reached: () => void = () => undefined;
  const socket = net.connect({
    host: '127.0.0.1',
    port,
    noDelay: true,
    onread: {
      buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES),
      callback: (bytes: number): boolean => {
        received += bytes;
        if (received >= goal) reached();
        return true;
      },
    },
  });
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  const reach = (bytes: number): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const onClose = (): void => reject(new RingtrainError('the tcp peer closed its back channel mid-run'));
      goal = bytes;
      reached = () => {
        socket.off('close', onClose);
        resolve();
      };
      socket.once('close', onClose);
      if (received >= goal) reached();
    });
  return { socket, reach };
}

/**
 * Child side: reads `runs` × `bytes` into one reused buffer, acknowledging each run. With
 * `bidirectional`, it first listens for the parent's back channel (reporting its port) and sends
 * `bytes` there during each run.
 */
export async function runTcpSink(options: {
  port: number;
  bytes: number;
  runs: number;
  bidirectional?: boolean;
  onListening?: (port: number) => void;
}): Promise<{ received: number }> {
  const back = options.bidirectional === true ? await acceptBackChannel(options.onListening) : undefined;
  const payload = Buffer.alloc(back === undefined ? 0 : WRITE_BYTES, 0xa5);
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
          // The first bytes of a run start this side's share of it.
          if (inRun === 0 && back !== undefined) void send(back, payload, options.bytes);
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
  back?.destroy();
  return { received };
}

async function acceptBackChannel(onListening: ((port: number) => void) | undefined): Promise<net.Socket> {
  const server = net.createServer({ noDelay: true });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  onListening?.((server.address() as net.AddressInfo).port);
  const socket = await accepted;
  server.close();
  socket.on('error', () => undefined);
  return socket;
}
