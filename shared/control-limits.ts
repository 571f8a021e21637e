// Bounds on what one control-plane peer can make the coordinator hold or write (issue 16 §4):
// message sizes sized to the largest legitimate message, and text fields capped before they are
// stored or logged. Pure values and functions, shared by the coordinator and the workers.

/** Bytes per BlobChunk / load_state chunk on the control stream (state and model transfers). */
export const BLOB_CHUNK_BYTES = 1 << 20;

/**
 * The largest message the coordinator accepts from a worker: one blob chunk plus room for its
 * fields. Every other worker message (hello, reports, heartbeats) is far smaller.
 */
export const COORDINATOR_MAX_RECEIVE_BYTES = BLOB_CHUNK_BYTES + 64 * 1024;

/**
 * The highest generation a rejoining worker may claim. The coordinator continues above the
 * generations its rejoining workers knew; a claim near 2^32 would make the next generation number
 * wrap around (uint32 on the wire). No real run gets near 2^31 generations.
 */
export const MAX_CLAIMED_GENERATION = 2 ** 31;

/** Characters kept of a host name or address (a DNS name is at most 253, plus ":port"). */
export const MAX_ADDRESS_CHARS = 260;
/** Characters kept of a free-text field from a peer (a failure message, an abort reason). */
export const MAX_REASON_CHARS = 2_000;
/** Characters kept of a short identifier from a peer (a version, a job hash, a busy kind). */
export const MAX_TOKEN_CHARS = 100;

/**
 * `text` with control characters (newlines among them: one peer, one log line) replaced by
 * spaces and cut to `maxChars`, saying how much was cut.
 */
export function capText(text: string, maxChars: number): string {
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\u0000-\u001f\u007f]/g, ' ');
  return clean.length <= maxChars
    ? clean
    : `${clean.slice(0, maxChars)}… (${clean.length - maxChars} more characters cut)`;
}
