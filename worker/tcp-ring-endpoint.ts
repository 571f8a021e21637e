// A worker's data port, serving both ring transports on one listener, and the choice between
// them. The TcpRingServer owns the port; a connection that does not open with the ring magic
// (a gRPC client's HTTP/2 preface) is injected into the RingDataServer. So the one address a
// worker advertises works whichever `allreduce.transport` the job names, even though a worker
// only learns the job after it has advertised its address.
import type { Job } from '../shared/job-schema.js';
import type { Logger } from '../shared/logger.js';
import type { CollectiveStats } from './collective-stats.js';
import { RingCommunicator, RingDataServer } from './ring-transport.js';
import { TcpRingCommunicator, TcpRingServer } from './tcp-ring-transport.js';

/** What a training step needs from a ring, whichever transport carries it. */
export interface RingCollective {
  /** In-place sum over all ranks; (step, collective) strictly increase across calls. Resolves with how long this rank waited for its peers. */
  allReduce(buffer: Float32Array, step: number, collective?: number): Promise<CollectiveStats>;
  close(): Promise<void>;
}

/** This rank's place in one generation's ring. */
export interface RingPosition {
  rank: number;
  worldSize: number;
  generation: number;
  /** host:port of the left neighbour's data port (tcp receives from there). */
  leftAddress: string;
  /** host:port of the right neighbour's data port (grpc pushes there). */
  rightAddress: string;
}

export class RingEndpoint {
  private constructor(
    readonly grpc: RingDataServer,
    readonly tcp: TcpRingServer,
  ) {}

  /** Listens on host:port (0 = ephemeral); PortInUseError when taken. */
  static async start(options: { host: string; port: number; logger?: Logger }): Promise<RingEndpoint> {
    const logger = options.logger;
    // gRPC only ever gets connections through the shared port; its own listener stays on loopback.
    const grpc = await RingDataServer.start({ host: '127.0.0.1', port: 0, ...(logger ? { logger } : {}) });
    try {
      const tcp = await TcpRingServer.start({ ...options, otherProtocol: (socket) => grpc.injectConnection(socket) });
      return new RingEndpoint(grpc, tcp);
    } catch (error) {
      await grpc.close();
      throw error;
    }
  }

  /** The port to advertise. */
  get port(): number {
    return this.tcp.port;
  }

  /** Joins generation `position.generation` of the ring over the job's transport. */
  async connect(
    position: RingPosition,
    allreduce: Job['allreduce'],
    collectiveTimeoutMs: number,
    logger?: Logger,
  ): Promise<RingCollective> {
    const { rank, worldSize, generation, leftAddress, rightAddress } = position;
    const common = {
      rank,
      worldSize,
      generation,
      chunkBytes: allreduce.chunkBytes,
      collectiveTimeoutMs,
      ...(logger ? { logger } : {}),
    };
    if (allreduce.transport === 'grpc') return RingCommunicator.connect({ ...common, rightAddress, server: this.grpc });
    return TcpRingCommunicator.connect({
      ...common,
      leftAddress,
      server: this.tcp,
      compression: allreduce.compression,
    });
  }

  async close(): Promise<void> {
    await Promise.all([this.tcp.close(), this.grpc.close()]);
  }
}
