// Loads proto/ringtrain.proto at run time. Message and service types come from
// proto/generated (made by `npm run gen:proto`), never written by hand.
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType } from '../proto/generated/ringtrain.js';
import { COORDINATOR_MAX_RECEIVE_BYTES } from './control-limits.js';

/** Absolute path of a .proto file in proto/, found relative to this module in both src and dist. */
export function protoPath(file = 'ringtrain.proto'): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  // src: <root>/shared ; dist: <root>/dist/shared
  const root = path.basename(path.dirname(here)) === 'dist' ? path.resolve(here, '../..') : path.resolve(here, '..');
  return path.join(root, 'proto', file);
}

let cached: ProtoGrpcType | undefined;

// grpc-js writes its own diagnostics to stderr ("E No address added ..."); ringtrain reports
// every such failure itself, once, so the library stays quiet unless GRPC_VERBOSITY asks.
if (process.env['GRPC_VERBOSITY'] === undefined) grpc.setLogVerbosity(grpc.logVerbosity.NONE);

/** The loaded `ringtrain.v1` package. Options must match the gen:proto flags. */
export function loadProto(): ProtoGrpcType {
  if (cached === undefined) {
    const definition = protoLoader.loadSync(protoPath(), {
      longs: Number,
      enums: String,
      defaults: true,
      oneofs: true,
      keepCase: false,
    });
    cached = grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType;
  }
  return cached;
}

/** Lifts gRPC's 4 MiB default so big state blobs and frames are never refused. */
const MESSAGE_LIMITS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': 256 * 1024 * 1024,
  'grpc.max_send_message_length': 256 * 1024 * 1024,
};

/**
 * Channels whose event loop is never blocked for long (the worker's heartbeat thread). Keepalive
 * waits 30 s for a ping's answer: with 5 s, a coordinator that is merely paused (SIGSTOP, a starved
 * VM) for 12-20 s was given up as vanished. A vanished peer is still noticed within ~40 s, and a
 * dead process at once (its TCP connection closes).
 */
export const GRPC_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  ...MESSAGE_LIMITS,
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 30_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_time_between_pings_ms': 5_000,
};

/**
 * The coordinator's control server: no keepalive pings (below), and a receive limit sized to the
 * largest message a worker legitimately sends, so one peer cannot make it buffer 256 MiB.
 */
export const CONTROL_SERVER_OPTIONS: grpc.ChannelOptions = {
  ...MESSAGE_LIMITS,
  'grpc.max_receive_message_length': COORDINATOR_MAX_RECEIVE_BYTES,
};

/**
 * The control plane's server and the worker's control channel: no keepalive pings. Pings on a
 * worker's control connection are handled by its compute thread, which cannot answer during a
 * long synchronous step (and once it can, grpc-js's expired ping timer runs before the ack is
 * read), so they would cut a healthy worker. Liveness rides on the worker's heartbeat thread
 * instead, whose own channel uses GRPC_CHANNEL_OPTIONS (see worker/process/heartbeat.ts).
 */
export const CONTROL_CHANNEL_OPTIONS: grpc.ChannelOptions = MESSAGE_LIMITS;
