// `ringtrain certs`: a CA and one certificate that every component of a job presents (server and
// client use), plus a job token, for local and test use. Made with node-forge; the CA's key is
// not kept, so nobody can mint more certificates for this CA: run it again to rotate.
//
// Invariant: the output folder appears complete or not at all (written into a temporary sibling,
// renamed at the end); keys and the token are readable by the owner only (0600).
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import * as path from 'node:path';
import forge from 'node-forge';
import { FlagError } from '../errors.js';

export interface MadeCerts {
  dir: string;
  files: { ca: string; cert: string; key: string; token: string };
}

/** How long the certificates are valid. */
const VALID_DAYS = 365;

/** Writes ca.pem, cert.pem, key.pem and token into `outDir` (which must not exist yet). */
export function makeCerts(outDir: string, hosts: readonly string[]): MadeCerts {
  const dir = path.resolve(outDir);
  if (existsSync(dir)) throw new FlagError(`--out ${outDir}`, 'already exists; remove it or name a new folder');
  const ca = makeCa();
  const leaf = makeLeaf(ca, ['localhost', '127.0.0.1', '::1', ...hosts]);
  const staging = `${dir}.tmp-${process.pid}`;
  mkdirSync(staging, { recursive: true, mode: 0o700 });
  try {
    writeFileSync(path.join(staging, 'ca.pem'), forge.pki.certificateToPem(ca.cert), { mode: 0o644 });
    writeFileSync(path.join(staging, 'cert.pem'), forge.pki.certificateToPem(leaf.cert), { mode: 0o644 });
    writeFileSync(path.join(staging, 'key.pem'), forge.pki.privateKeyToPem(leaf.key), { mode: 0o600 });
    writeFileSync(path.join(staging, 'token'), `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600 });
    renameSync(staging, dir);
  } catch (error) {
    rmSync(staging, { recursive: true, force: true });
    throw error;
  }
  const file = (name: string): string => path.join(dir, name);
  return { dir, files: { ca: file('ca.pem'), cert: file('cert.pem'), key: file('key.pem'), token: file('token') } };
}

interface Issued {
  cert: forge.pki.Certificate;
  key: forge.pki.rsa.PrivateKey;
}

function makeCa(): Issued {
  const keys = forge.pki.rsa.generateKeyPair({ bits: 2048 });
  const cert = baseCertificate(keys.publicKey, [{ name: 'commonName', value: 'ringtrain job CA' }]);
  cert.setIssuer(cert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return { cert, key: keys.privateKey };
}

/** One certificate for every component: server and client use, named for every host given. */
function makeLeaf(ca: Issued, hosts: readonly string[]): Issued {
  const keys = forge.pki.rsa.generateKeyPair({ bits: 2048 });
  const cert = baseCertificate(keys.publicKey, [{ name: 'commonName', value: 'ringtrain' }]);
  cert.setIssuer(ca.cert.subject.attributes);
  const altNames = [...new Set(hosts)].map((host) =>
    isIP(host) !== 0 ? { type: 7, ip: host } : { type: 2, value: host },
  );
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
    { name: 'subjectAltName', altNames },
  ]);
  cert.sign(ca.key, forge.md.sha256.create());
  return { cert, key: keys.privateKey };
}

function baseCertificate(
  publicKey: forge.pki.rsa.PublicKey,
  subject: forge.pki.CertificateField[],
): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = `01${randomBytes(15).toString('hex')}`; // positive, 128 bits of randomness
  const now = new Date();
  cert.validity.notBefore = new Date(now.getTime() - 60_000); // a little clock skew between hosts
  cert.validity.notAfter = new Date(now.getTime() + VALID_DAYS * 24 * 3600 * 1000);
  cert.setSubject(subject);
  return cert;
}
