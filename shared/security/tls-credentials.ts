// JobSecurity turned into what each transport takes: gRPC server and channel credentials plus the
// token's call metadata (control plane), and node:tls options (the ring's data plane).
//
// Peers are authenticated by the job's CA alone, not by host name: `ringtrain certs` issues one
// certificate that every component presents, so a host-name check would add nothing, and pod
// addresses are not known when certificates are made. Use one CA per job (see README).
import type * as tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { TOKEN_METADATA_KEY, type JobSecurity, type TlsMaterial } from './job-security.js';

/** The control server's credentials: mutual TLS (a client certificate is required) or plaintext. */
export function serverCredentials(security: JobSecurity): grpc.ServerCredentials {
  const material = security.tls;
  if (material === undefined) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(
    material.ca,
    [{ cert_chain: material.cert, private_key: material.key }],
    true,
  );
}

/** A worker's channel credentials toward the coordinator. */
export function channelCredentials(material: TlsMaterial | undefined): grpc.ChannelCredentials {
  if (material === undefined) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(asBuffer(material.ca), asBuffer(material.key), asBuffer(material.cert), {
    checkServerIdentity: () => undefined,
  });
}

/** grpc-js takes only Buffers; material that crossed into a worker thread arrives as Uint8Array. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** The metadata a worker sends on every call: its token, if it has one. */
export function tokenMetadata(token: string | undefined): grpc.Metadata {
  const metadata = new grpc.Metadata();
  if (token !== undefined) metadata.set(TOKEN_METADATA_KEY, token);
  return metadata;
}

/** The token a call presented (first value of the metadata key), if any. */
export function presentedToken(metadata: grpc.Metadata): string | undefined {
  const value = metadata.get(TOKEN_METADATA_KEY)[0];
  return typeof value === 'string' ? value : undefined;
}

/** A ring data port's TLS options: a client certificate from the job's CA is required. */
export function ringServerTls(material: TlsMaterial): tls.TlsOptions {
  return { ca: material.ca, cert: material.cert, key: material.key, requestCert: true, rejectUnauthorized: true };
}

/** Dialling a neighbour's data port: its certificate must come from the job's CA. */
export function ringClientTls(material: TlsMaterial): tls.ConnectionOptions {
  return {
    ca: material.ca,
    cert: material.cert,
    key: material.key,
    rejectUnauthorized: true,
    checkServerIdentity: () => undefined,
  };
}
