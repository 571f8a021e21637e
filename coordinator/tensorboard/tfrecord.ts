// TFRecord framing, the container of TensorBoard event files. Each record is
//
//   uint64 length (little-endian) | uint32 masked CRC-32C of those 8 bytes | data | uint32 masked CRC-32C of data
//
// Invariant: readTfRecords accepts a file only if every length and data CRC matches; a torn
// last record (a crash mid-write) is reported, never silently read as data.
import { RingtrainError } from '../../shared/errors.js';
import { maskedCrc32c } from './crc32c.js';

const HEADER_BYTES = 12;
const FOOTER_BYTES = 4;

/** One framed record holding `data`. */
export function frameTfRecord(data: Uint8Array): Buffer {
  const out = Buffer.alloc(HEADER_BYTES + data.length + FOOTER_BYTES);
  out.writeBigUInt64LE(BigInt(data.length), 0);
  out.writeUInt32LE(maskedCrc32c(out.subarray(0, 8)), 8);
  out.set(data, HEADER_BYTES);
  out.writeUInt32LE(maskedCrc32c(data), HEADER_BYTES + data.length);
  return out;
}

export interface TfRecords {
  records: Buffer[];
  /** Bytes after the last whole record (a torn write); 0 in a complete file. */
  tornBytes: number;
}

/** Splits a TFRecord file into its records, checking both CRCs of each (throws on a mismatch). */
export function readTfRecords(bytes: Buffer, name = 'TFRecord file'): TfRecords {
  const records: Buffer[] = [];
  let offset = 0;
  while (bytes.length - offset >= HEADER_BYTES) {
    const length = Number(bytes.readBigUInt64LE(offset));
    if (bytes.readUInt32LE(offset + 8) !== maskedCrc32c(bytes.subarray(offset, offset + 8)))
      throw new RingtrainError(`${name}: length CRC mismatch at byte ${offset}`);
    const end = offset + HEADER_BYTES + length + FOOTER_BYTES;
    if (end > bytes.length) break;
    const data = bytes.subarray(offset + HEADER_BYTES, offset + HEADER_BYTES + length);
    if (bytes.readUInt32LE(end - FOOTER_BYTES) !== maskedCrc32c(data))
      throw new RingtrainError(`${name}: data CRC mismatch in the record at byte ${offset}`);
    records.push(data);
    offset = end;
  }
  return { records, tornBytes: bytes.length - offset };
}
