// The standard grpc.health.v1 Health service (from the grpc-health-check package) on a
// coordinator's or worker's gRPC server, so Kubernetes' native `grpc:` probes and grpc_health_probe
// can ask it. Two names are served:
//   ''         overall readiness; SERVING once the server answers, NOT_SERVING while draining.
//   'liveness' SERVING for the life of the process: if it answers, the event loop is alive.
// Liveness is a separate name so a draining (not ready) process is not also restarted as dead.
import type * as grpc from '@grpc/grpc-js';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';

/** The service name liveness probes ask for (`grpc: { port, service: liveness }`). */
export const LIVENESS_SERVICE = 'liveness';

export interface HealthReporter {
  /** Marks `service` ('' = the whole server) SERVING; open Watch streams see the change. */
  setServing(service?: string): void;
  /** Marks `service` ('' = the whole server) NOT_SERVING, e.g. while draining on SIGTERM. */
  setNotServing(service?: string): void;
}

/** Adds the Health service to `server` (call before `bindAsync`); '' and 'liveness' start SERVING. */
export function addHealthService(server: grpc.Server): HealthReporter {
  const initial: Record<string, ServingStatus> = { '': 'SERVING', [LIVENESS_SERVICE]: 'SERVING' };
  const health = new HealthImplementation(initial);
  health.addToServer(server);
  return {
    setServing: (service = '') => health.setStatus(service, 'SERVING'),
    setNotServing: (service = '') => health.setStatus(service, 'NOT_SERVING'),
  };
}
