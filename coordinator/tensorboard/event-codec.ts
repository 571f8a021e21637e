// TensorBoard `Event` messages to and from bytes, through protobufjs and proto/tensorboard.proto
// (TensorFlow's field numbers). Types come from proto/generated/tensorflow/.
import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs';
import type { Event, Event__Output } from '../../proto/generated/tensorflow/Event.js';
import { protoPath } from '../../shared/proto.js';
import { readTfRecords } from './tfrecord.js';

/** The file_version of the first event of every file: TensorBoard's current event format. */
export const FILE_VERSION = 'brain.Event:2';

let eventType: protobuf.Type | undefined;

function typeOfEvent(): protobuf.Type {
  eventType ??= protobuf.loadSync(protoPath('tensorboard.proto')).lookupType('tensorflow.Event');
  return eventType;
}

export function encodeEvent(event: Event): Uint8Array {
  const type = typeOfEvent();
  return type.encode(type.fromObject(event)).finish();
}

export function decodeEvent(bytes: Uint8Array): Event__Output {
  const type = typeOfEvent();
  return type.toObject(type.decode(bytes), { longs: Number, defaults: true, oneofs: true }) as Event__Output;
}

/** Every event of one event file, its CRCs checked (throws on a mismatch; a torn last record is left out). */
export function readEventFile(file: string): Event__Output[] {
  return readTfRecords(readFileSync(file), file).records.map(decodeEvent);
}
