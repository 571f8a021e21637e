// grpc.health.v1 on a real gRPC server bound to 127.0.0.1:0, asked by a real Health client:
// what Kubernetes' `grpc:` probes and grpc_health_probe see.
import * as grpc from '@grpc/grpc-js';
import { service as healthServiceDefinition } from 'grpc-health-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addHealthService, LIVENESS_SERVICE, type HealthReporter } from '../../shared/health.js';

interface HealthResponse {
  status: string;
}
interface HealthClient extends grpc.Client {
  Check(
    request: { service: string },
    callback: (error: grpc.ServiceError | null, response?: HealthResponse) => void,
  ): void;
  Watch(request: { service: string }): grpc.ClientReadableStream<HealthResponse>;
}

const HealthClientCtor = grpc.makeGenericClientConstructor(healthServiceDefinition, 'Health') as unknown as new (
  address: string,
  credentials: grpc.ChannelCredentials,
) => HealthClient;

function check(client: HealthClient, service: string): Promise<string> {
  return new Promise((resolve, reject) => {
    client.Check({ service }, (error, response) => {
      if (error !== null) reject(error);
      else resolve(response?.status ?? 'missing');
    });
  });
}

describe('addHealthService', () => {
  let server: grpc.Server;
  let reporter: HealthReporter;
  let client: HealthClient;

  beforeAll(async () => {
    server = new grpc.Server();
    reporter = addHealthService(server);
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) =>
        error === null ? resolve(bound) : reject(error),
      );
    });
    client = new HealthClientCtor(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });

  afterAll(() => {
    client.close();
    server.forceShutdown();
  });

  it('starts with the server and liveness SERVING', async () => {
    expect(await check(client, '')).toBe('SERVING');
    expect(await check(client, LIVENESS_SERVICE)).toBe('SERVING');
  });

  it('answers NOT_FOUND for a service it was never told about', async () => {
    await expect(check(client, 'ringtrain.v1.Nope')).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  });

  it('reports draining to Check and to an open Watch, and leaves liveness alone', async () => {
    const watch = client.Watch({ service: '' });
    const streamErrors: grpc.ServiceError[] = [];
    watch.on('error', (error: grpc.ServiceError) => streamErrors.push(error));
    const seen: string[] = [];
    const sawNotServing = new Promise<void>((resolve) => {
      watch.on('data', (response: HealthResponse) => {
        seen.push(response.status);
        if (response.status === 'SERVING') reporter.setNotServing();
        if (response.status === 'NOT_SERVING') resolve();
      });
    });
    await sawNotServing;
    watch.cancel();
    expect(seen).toEqual(['SERVING', 'NOT_SERVING']);
    expect(streamErrors.every((error) => error.code === grpc.status.CANCELLED)).toBe(true);
    expect(await check(client, '')).toBe('NOT_SERVING');
    expect(await check(client, LIVENESS_SERVICE)).toBe('SERVING');
    reporter.setServing();
    expect(await check(client, '')).toBe('SERVING');
  });

  it('tracks named services independently', async () => {
    reporter.setServing('ringtrain.v1.Control');
    reporter.setNotServing('ringtrain.v1.Ring');
    expect(await check(client, 'ringtrain.v1.Control')).toBe('SERVING');
    expect(await check(client, 'ringtrain.v1.Ring')).toBe('NOT_SERVING');
  });
});
