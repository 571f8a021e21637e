// Who may take part in a job: the mutual-TLS material (a CA, and the certificate and key every
// component presents) and the job token every worker presents. Resolved once per process from,
// in order: command-line flags, the environment (RINGTRAIN_TLS_CA, RINGTRAIN_TLS_CERT,
// RINGTRAIN_TLS_KEY, RINGTRAIN_TOKEN), the job's `security:` block. See the README's "Security model".
//
// Invariants:
//   - TLS is all or nothing: a CA, a certificate and a key, all readable PEM files;
//   - a token is at least MIN_TOKEN_CHARS characters with no surrounding whitespace;
//   - tokens are only ever compared with `tokensMatch` (constant time).
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describeReadFailure, FlagError } from '../errors.js';

/** PEM files of one side of mutual TLS: the CA that signs every peer, and this process's own pair. */
export interface TlsMaterial {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  /** Absolute paths the material was read from (handed to local worker processes). */
  files: { ca: string; cert: string; key: string };
}

export interface JobSecurity {
  /** Mutual TLS on both planes; undefined = plaintext. */
  tls?: TlsMaterial;
  /** The job token; undefined = none asked for (coordinator) or presented (worker). */
  token?: string;
}

/** Paths as given by flags or the job's `security:` block (the job's already absolute). */
export interface SecurityPaths {
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  tokenFile?: string | undefined;
}

/** The gRPC metadata key the worker's token travels under, on every call. */
export const TOKEN_METADATA_KEY = 'x-ringtrain-token';
/** Shortest token accepted: 16 characters (`ringtrain certs` writes 43). */
export const MIN_TOKEN_CHARS = 16;
/** Longest token accepted (it rides in every call's metadata and every ring handshake). */
export const MAX_TOKEN_BYTES = 1024;

/**
 * Flags over environment over the job. Each TLS file is taken from the first source that names
 * it; the token from --token-file, else RINGTRAIN_TOKEN, else the job's tokenFile.
 */
export function resolveSecurity(
  flags: SecurityPaths,
  env: NodeJS.ProcessEnv,
  job: SecurityPaths | undefined,
): JobSecurity {
  const pick = (flag: keyof SecurityPaths, variable: string): { file: string; from: string } | undefined => {
    const given = flags[flag];
    if (given !== undefined) return { file: path.resolve(given), from: `--${flagName(flag)}` };
    const fromEnv = env[variable];
    if (fromEnv !== undefined && fromEnv !== '') return { file: path.resolve(fromEnv), from: variable };
    const inJob = job?.[flag];
    return inJob !== undefined ? { file: path.resolve(inJob), from: `security.${flag}` } : undefined;
  };
  const ca = pick('ca', 'RINGTRAIN_TLS_CA');
  const cert = pick('cert', 'RINGTRAIN_TLS_CERT');
  const key = pick('key', 'RINGTRAIN_TLS_KEY');
  const security: JobSecurity = {};
  const named = [ca, cert, key].filter((p) => p !== undefined);
  if (named.length > 0) {
    if (ca === undefined || cert === undefined || key === undefined) {
      const missing = [ca ? '' : 'a CA', cert ? '' : 'a certificate', key ? '' : 'a key'].filter(Boolean).join(', ');
      throw new FlagError(
        named.map((p) => p.from).join(', '),
        `mutual TLS needs a CA, a certificate and a key; ${missing} missing: give --tls-ca, --tls-cert and --tls-key (or RINGTRAIN_TLS_CA/_CERT/_KEY, or security.ca/cert/key in the job)`,
      );
    }
    security.tls = {
      ca: readPem(ca, 'CERTIFICATE'),
      cert: readPem(cert, 'CERTIFICATE'),
      key: readPem(key, 'PRIVATE KEY'),
      files: { ca: ca.file, cert: cert.file, key: key.file },
    };
  }
  const tokenFile = flags.tokenFile ?? (env['RINGTRAIN_TOKEN'] === undefined ? job?.tokenFile : undefined);
  if (tokenFile !== undefined) {
    const from = flags.tokenFile !== undefined ? '--token-file' : 'security.tokenFile';
    security.token = checkToken(readText(path.resolve(tokenFile), from).trim(), `${from} ${tokenFile}`);
  } else if (env['RINGTRAIN_TOKEN'] !== undefined) {
    security.token = checkToken(env['RINGTRAIN_TOKEN'].trim(), 'RINGTRAIN_TOKEN');
  }
  return security;
}

/** The environment a local worker process needs to present the same identity as its parent. */
export function securityEnv(security: JobSecurity): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  if (security.tls !== undefined) {
    env['RINGTRAIN_TLS_CA'] = security.tls.files.ca;
    env['RINGTRAIN_TLS_CERT'] = security.tls.files.cert;
    env['RINGTRAIN_TLS_KEY'] = security.tls.files.key;
  }
  if (security.token !== undefined) env['RINGTRAIN_TOKEN'] = security.token;
  return env;
}

/**
 * Constant-time comparison of a presented token with the job's. Both sides are hashed first, so
 * the comparison takes the same time whatever the presented token's length.
 */
export function tokensMatch(presented: string | Uint8Array | undefined, expected: string): boolean {
  if (presented === undefined) return false;
  const digest = (value: string | Uint8Array): Buffer => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(presented), digest(expected));
}

/** The one line a process says at start about how its job is protected, or undefined when it is. */
export function securityWarning(security: JobSecurity, what: string): string | undefined {
  if (security.tls !== undefined && security.token !== undefined) return undefined;
  if (security.tls !== undefined)
    return `${what} runs with mutual TLS but no job token: any holder of a certificate from this CA may join (add --token-file or RINGTRAIN_TOKEN)`;
  if (security.token !== undefined)
    return `${what} runs without TLS: the job token, the job and its data travel in plaintext (add --tls-ca/--tls-cert/--tls-key; see README "Security model")`;
  return `${what} is unauthenticated: anyone who can reach its ports can join or read the job (ports bind to loopback unless an address is given; see README "Security model")`;
}

function checkToken(token: string, source: string): string {
  if (token.length < MIN_TOKEN_CHARS || Buffer.byteLength(token) > MAX_TOKEN_BYTES)
    throw new FlagError(
      source,
      `a job token must be ${MIN_TOKEN_CHARS} to ${MAX_TOKEN_BYTES} bytes; make one with \`ringtrain certs --out DIR\` (DIR/token)`,
    );
  return token;
}

function readPem(given: { file: string; from: string }, kind: 'CERTIFICATE' | 'PRIVATE KEY'): Buffer {
  const text = readText(given.file, given.from);
  if (!new RegExp(`-----BEGIN [A-Z ]*${kind}-----`).test(text))
    throw new FlagError(
      `${given.from} ${given.file}`,
      `not a PEM ${kind === 'CERTIFICATE' ? 'certificate' : 'private key'}; make a set with \`ringtrain certs --out DIR\``,
    );
  return Buffer.from(text);
}

function readText(file: string, from: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (cause) {
    throw new FlagError(`${from} ${file}`, describeReadFailure(cause), { cause });
  }
}

function flagName(flag: keyof SecurityPaths): string {
  return flag === 'tokenFile' ? 'token-file' : `tls-${flag}`;
}
