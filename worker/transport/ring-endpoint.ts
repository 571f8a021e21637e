// A worker's data port and its way into each generation's ring. The data plane is one transport,
// raw TCP frames (see the README's architecture section for why not gRPC): the TcpRingServer owns
// the port, and `connect` joins a generation's ring over it.
import type { Job } from '../../shared/job-schema.js';
import type { Logger } from '../../shared/logger.js';
import type { JobSecurity } from '../../shared/security/job-security.js';
import type { RingCollective } from '../collectives/ring-collective.js';
import { TcpRingCommunicator, TcpRingServer } from './ring-communicator.js';

/** This rank's place in one generation's ring. */
export interface RingPosition {
  rank: number;
  worldSize: number;
  generation: number;
  /** host:port of the left neighbour's data port (this rank receives from there). */
  leftAddress: string;
  /** host:port of the right neighbour's data port (it dials this rank; kept for logs). */
  rightAddress: string;
}

export class RingEndpoint {
  private constructor(readonly tcp: TcpRingServer) {}

  /** Listens on host:port (0 = ephemeral); PortInUseError when taken. */
  static async start(options: {
    host: string;
    port: number;
    logger?: Logger;
    security?: JobSecurity;
  }): Promise<RingEndpoint> {
    return new RingEndpoint(await TcpRingServer.start(options));
  }

  /** The port to advertise. */
  get port(): number {
    return this.tcp.port;
  }

  /** Joins generation `position.generation` of the ring. */
  async connect(
    position: RingPosition,
    allreduce: Job['allreduce'],
    collectiveTimeoutMs: number,
    logger?: Logger,
  ): Promise<RingCollective> {
    const { rank, worldSize, generation, leftAddress } = position;
    return TcpRingCommunicator.connect({
      rank,
      worldSize,
      generation,
      chunkBytes: allreduce.chunkBytes,
      collectiveTimeoutMs,
      leftAddress,
      server: this.tcp,
      compression: allreduce.compression,
      ...(logger ? { logger } : {}),
    });
  }

  async close(): Promise<void> {
    await this.tcp.close();
  }
}
