// Where a process's TLS material and job token come from (flags, then the environment, then the
// job), what is refused as bad input, and the constant-time token comparison's answers.
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FlagError } from '../../shared/errors.js';
import { resolveSecurity, securityEnv, securityWarning, tokensMatch } from '../../shared/security/job-security.js';
import { makeCerts } from '../../shared/security/make-certs.js';
import { removeTempDirs, tempDir } from '../helpers/cli.js';

const dir = tempDir('ringtrain-job-security-');
afterAll(() => removeTempDirs());
const a = makeCerts(path.join(dir, 'a'), []);
const b = makeCerts(path.join(dir, 'b'), []);
const pathsOf = (files: typeof a.files): { ca: string; cert: string; key: string; tokenFile: string } => ({
  ca: files.ca,
  cert: files.cert,
  key: files.key,
  tokenFile: files.token,
});

describe('resolveSecurity', () => {
  it('is plaintext without a token when nothing names either', () => {
    expect(resolveSecurity({}, {}, undefined)).toEqual({});
  });

  it('takes flags over the environment over the job, file by file', () => {
    const env = { RINGTRAIN_TLS_CA: b.files.ca, RINGTRAIN_TLS_CERT: b.files.cert, RINGTRAIN_TOKEN: 'e'.repeat(20) };
    const security = resolveSecurity({ ca: a.files.ca }, env, pathsOf(b.files));
    expect(security.tls?.files).toEqual({ ca: a.files.ca, cert: b.files.cert, key: b.files.key });
    expect(security.token).toBe('e'.repeat(20));
  });

  it("reads the job's token file when neither a flag nor RINGTRAIN_TOKEN gives one, trimmed", () => {
    const security = resolveSecurity({}, {}, { tokenFile: a.files.token });
    expect(security.tls).toBeUndefined();
    expect(security.token).toMatch(/^[\w-]{43}$/);
  });

  it('hands local workers the same files and token through their environment', () => {
    const security = resolveSecurity({}, {}, pathsOf(a.files));
    expect(resolveSecurity({}, securityEnv(security), undefined)).toEqual(security);
  });

  it.each([
    { name: 'half a TLS setup', flags: { ca: a.files.ca }, message: /a certificate, a key missing/ },
    { name: 'a missing file', flags: { tokenFile: path.join(dir, 'none') }, message: /--token-file .*none/ },
    {
      name: 'a key where the CA goes',
      flags: { ca: a.files.key, cert: a.files.cert, key: a.files.key },
      message: /not a PEM certificate/,
    },
    { name: 'a short token', flags: { tokenFile: writeShort() }, message: /must be 16 to 1024 bytes/ },
  ])('refuses $name with a FlagError naming the input', ({ flags, message }) => {
    const attempt = (): unknown => resolveSecurity(flags, {}, undefined);
    expect(attempt).toThrow(FlagError);
    expect(attempt).toThrow(message);
  });
});

function writeShort(): string {
  const file = path.join(dir, 'short-token');
  writeFileSync(file, 'short\n');
  return file;
}

describe('tokensMatch', () => {
  it('matches only the same token, whatever the lengths', () => {
    expect(tokensMatch('t'.repeat(32), 't'.repeat(32))).toBe(true);
    expect(tokensMatch(Buffer.from('t'.repeat(32)), 't'.repeat(32))).toBe(true);
    expect(tokensMatch('t'.repeat(31), 't'.repeat(32))).toBe(false);
    expect(tokensMatch('', 't'.repeat(32))).toBe(false);
    expect(tokensMatch(undefined, 't'.repeat(32))).toBe(false);
  });
});

describe('securityWarning', () => {
  it('says what is missing, and nothing when both are there', () => {
    const both = resolveSecurity({}, {}, pathsOf(a.files));
    expect(securityWarning(both, 'this job')).toBeUndefined();
    expect(securityWarning({}, 'this job')).toMatch(/this job is unauthenticated/);
    expect(securityWarning({ token: both.token! }, 'this job')).toMatch(/without TLS/);
    expect(securityWarning({ tls: both.tls! }, 'this job')).toMatch(/no job token/);
  });
});
