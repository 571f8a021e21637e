// Where the monitoring HTTP server (/metrics, the dashboard) listens: `--http PORT`,
// `--http ADDR:PORT` or the job's `http:`. A bare port binds loopback, so nothing of a run is
// exposed to the network unless an address is given (`--http 0.0.0.0:9464`).
import { z } from 'zod';

export interface HttpAddress {
  host: string;
  /** 0 = any free port. */
  port: number;
}

/** Loopback: the default bind address of a bare port. */
export const HTTP_DEFAULT_HOST = '127.0.0.1';

/** The job file's `http:` value: a port (0 = any free port) or "ADDR:PORT". */
export const httpAddressSchema = z.union([
  z.number().int().min(0).max(65535),
  z.string().refine((text) => parseHttpAddress(text) !== undefined, {
    message: 'give a port (0 = any free port) or ADDR:PORT, e.g. 9464 or 0.0.0.0:9464',
  }),
]);

/** `9464`, `0.0.0.0:9464`, `[::1]:9464` (as a string or a number); undefined when malformed. */
export function parseHttpAddress(value: string | number): HttpAddress | undefined {
  const text = String(value).trim();
  const match = /^(?:(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):)?(\d{1,5})$/.exec(text);
  if (match === null) return undefined;
  const port = Number(match[2]);
  if (port > 65535) return undefined;
  const host = match[1]?.replace(/^\[(.*)\]$/, '$1') ?? HTTP_DEFAULT_HOST;
  return { host, port };
}

/** "host:port", with IPv6 hosts in brackets, as a URL wants it. */
export function formatHostPort(address: HttpAddress): string {
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}
