// Entry point of the worker's heartbeat thread (started by heartbeat.ts): its own gRPC channel to
// the coordinator and one Heartbeats call, written to once per interval from this thread's own
// event loop, so a busy compute thread does not silence it. Reads the compute thread's state
// from shared memory; posts `{ lost }` to it when the coordinator ends the call or is unreachable.
import { parentPort, workerData } from 'node:worker_threads';
import { GRPC_CHANNEL_OPTIONS, loadProto } from '../../shared/proto.js';
import { channelCredentials, tokenMetadata } from '../../shared/security/tls-credentials.js';
import { BUSY_KINDS, SLOT, type HeartbeatThreadData } from './heartbeat.js';

const data = workerData as HeartbeatThreadData;
const view = new BigInt64Array(data.state);
const Control = loadProto().ringtrain.v1.Control;
// Keepalive on: this thread is never blocked, so an unanswered ping really means a lost coordinator.
// The same identity as the control stream: mutual TLS and the job token, when the worker has them.
const client = new Control(data.coordinator, channelCredentials(data.security.tls), GRPC_CHANNEL_OPTIONS);
/**
 * How long after its call ends this thread waits before telling the compute thread the
 * coordinator is lost: when the coordinator ended the session itself (shutdown, eviction), the
 * control stream says so first, and that must win.
 */
const LOST_GRACE_MS = 3_000;

const call = client.Heartbeats(tokenMetadata(data.security.token), (error) => {
  clearInterval(timer);
  const lost = error ? `heartbeats ended: ${error.details || error.message}` : 'heartbeats ended';
  setTimeout(() => {
    parentPort?.postMessage({ lost });
    client.close();
  }, LOST_GRACE_MS);
});

let first = true;

function beat(): void {
  const busyKind = BUSY_KINDS[Number(Atomics.load(view, SLOT.busyKind))] ?? '';
  const busySinceMs = Number(Atomics.load(view, SLOT.busySinceMs));
  call.write(
    {
      sessionId: data.sessionId,
      pid: data.pid,
      lastStep: Number(Atomics.load(view, SLOT.lastStep)),
      busyWith: busyKind,
      busyStep: busyKind === '' ? -1 : Number(Atomics.load(view, SLOT.busyStep)),
      busyMs: busyKind === '' ? 0 : Math.max(0, Date.now() - busySinceMs),
    },
    () => {
      if (first) parentPort?.postMessage({ beating: true });
      first = false;
    },
  );
}

beat();
// The call's callback, which clears it, can only run after this line (it is asynchronous).
const timer = setInterval(beat, data.intervalMs);
