// The coordinator's monitoring HTTP server (`--http`): GET /metrics (Prometheus exposition, from
// prometheus-metrics.ts), / (the live dashboard, dashboard-page.ts), /api/state (its JSON,
// run-telemetry.ts) and /chart.js (Chart.js's UMD build, served from node_modules: no CDN).
// It reads the run through one subscription, RunDirectory.onRecord: every step, validation and
// event record that metrics.jsonl receives, plus the current ring for hosts and the generation.
//
// Invariants: it only reads; nothing it does can stop or slow a step beyond updating counters
// (a failing request is answered 500 and logged, never thrown into the run). It binds before the
// run directory exists, so a taken port leaves nothing behind; close() ends open connections.
import * as http from 'node:http';
import { createReadStream } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import { isAddressInUse, PortInUseError } from '../../shared/errors.js';
import { formatHostPort, type HttpAddress } from '../../shared/http-address.js';
import type { Logger } from '../../shared/logger.js';
import type { RunDirectory } from '../run/run-directory.js';
import { dashboardHtml } from './dashboard-page.js';
import { PrometheusMetrics } from './prometheus-metrics.js';
import { RunTelemetry, type RingView } from './run-telemetry.js';

export interface RunMonitorOptions extends HttpAddress {
  /** The run's name, for the page title. */
  title: string;
  /** The job's stragglers.margin: the dashboard marks stragglers by the same rule. */
  stragglerMargin: number;
  logger: Logger;
}

export class RunMonitor {
  private ring: () => RingView | undefined = () => undefined;
  private readonly telemetry: RunTelemetry;
  private readonly metrics = new PrometheusMetrics(() => this.ring());
  private readonly server = http.createServer((request, response) => this.handle(request, response));
  private unsubscribe: (() => void) | undefined;
  /** Where it listens (port resolved when 0 was asked for). */
  address: HttpAddress;

  private constructor(private readonly options: RunMonitorOptions) {
    this.telemetry = new RunTelemetry(() => this.ring(), { stragglerMargin: options.stragglerMargin });
    this.address = { host: options.host, port: options.port };
  }

  /** Binds (throws PortInUseError naming --http when the port is taken). */
  static async start(options: RunMonitorOptions): Promise<RunMonitor> {
    const monitor = new RunMonitor(options);
    await new Promise<void>((resolve, reject) => {
      monitor.server.once('error', (error) =>
        reject(
          isAddressInUse(error) ? new PortInUseError(formatHostPort(options), { cause: error, flag: '--http' }) : error,
        ),
      );
      monitor.server.listen(options.port, options.host, () => resolve());
    });
    monitor.address = { host: options.host, port: (monitor.server.address() as AddressInfo).port };
    return monitor;
  }

  /** "http://host:port/" (a wildcard bind address shown as this machine's loopback). */
  get url(): string {
    const host = this.address.host === '0.0.0.0' || this.address.host === '::' ? '127.0.0.1' : this.address.host;
    return `http://${formatHostPort({ host, port: this.address.port })}/`;
  }

  /** Starts reading the run: every record appended to its metrics.jsonl, and the current ring. */
  attach(runDir: RunDirectory, ring: () => RingView | undefined): void {
    this.ring = ring;
    this.unsubscribe = runDir.onRecord((record) => {
      this.telemetry.observe(record);
      this.metrics.observe(record);
    });
  }

  async close(): Promise<void> {
    this.unsubscribe?.();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(request: http.IncomingMessage, response: http.ServerResponse): void {
    const route = new URL(request.url ?? '/', 'http://localhost').pathname;
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      send(response, 405, 'text/plain', 'only GET\n');
      return;
    }
    this.route(route, response).catch((error: unknown) => {
      this.options.logger.warn({ err: error, route }, 'monitor request failed');
      if (!response.headersSent) send(response, 500, 'text/plain', 'internal error\n');
      else response.destroy();
    });
  }

  private async route(route: string, response: http.ServerResponse): Promise<void> {
    switch (route) {
      case '/metrics': {
        const { contentType, body } = await this.metrics.exposition();
        send(response, 200, contentType, body);
        return;
      }
      case '/api/state':
        send(response, 200, 'application/json', JSON.stringify(this.telemetry.snapshot()));
        return;
      case '/':
        send(response, 200, 'text/html; charset=utf-8', dashboardHtml(this.options.title));
        return;
      case '/chart.js':
        response.writeHead(200, { 'content-type': 'text/javascript', 'cache-control': 'max-age=3600' });
        createReadStream(chartJsFile()).pipe(response);
        return;
      default:
        send(response, 404, 'text/plain', 'not found: try /, /metrics or /api/state\n');
    }
  }
}

function send(response: http.ServerResponse, status: number, contentType: string, body: string): void {
  response.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store' });
  response.end(body);
}

/** Chart.js's browser (UMD) build, beside the package's CommonJS entry point. */
function chartJsFile(): string {
  return path.join(path.dirname(createRequire(import.meta.url).resolve('chart.js')), 'chart.umd.min.js');
}
