// The coordinator's lookahead, seen from a worker: between boundaries step s+1's order arrives
// while step s is still running (before its report), and never across a boundary, where the
// validation order comes first. A scripted worker speaks the real gRPC control protocol to a real
// coordinator process and holds each step's report back until the next step's order arrives (or,
// where none comes ahead, as at a boundary, until a generous bound), as a slow step would.
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import type { CoordinatorMessage__Output } from '../../proto/generated/ringtrain/v1/CoordinatorMessage.js';
import type { WorkerMessage } from '../../proto/generated/ringtrain/v1/WorkerMessage.js';
import { loadDataset } from '../../shared/data/dataset.js';
import { resolvedJobSchema } from '../../shared/job-schema.js';
import { GRPC_CHANNEL_OPTIONS, loadProto } from '../../shared/proto.js';
import { CLI, tempDir, waitForCoordinatorPort, writeJob } from '../helpers/cli.js';

/** 48 training samples in batches of 16: steps 0-2 are epoch 0, and validation follows step 2. */
const JOB = {
  name: 'orders-ahead',
  seed: 5,
  data: { format: 'xor', samples: 64, split: { validation: 0.25, test: 0 } },
  model: {
    input: [2],
    layers: [
      { type: 'dense', units: 4, activation: 'relu' },
      { type: 'dense', units: 1, activation: 'sigmoid' },
    ],
  },
  loss: 'binaryCrossentropy',
  metrics: ['accuracy'],
  optimizer: { type: 'sgd', learningRate: 0.1 },
  training: { epochs: 3, batchSize: 16 },
  workers: 1,
  backend: 'cpu',
  checkpoint: { everySteps: 0, atEpochEnd: false, keep: 1 },
  // The scripted worker sends no heartbeats and holds a report up to HOLD_BOUND_MS: far below this.
  timeouts: { hangMs: 120_000 },
};
/**
 * The longest the scripted worker holds a report while no next order has come. Only the steps with
 * nothing ahead of them (the epoch-end step 2) wait it out; it is far above the time the
 * coordinator takes to send an order it has ready, so a lookahead order is never missed.
 */
const HOLD_BOUND_MS = 10_000;

let coordinator: ChildProcess | undefined;
let client: grpc.Client | undefined;

afterEach(() => {
  client?.close();
  coordinator?.kill('SIGKILL');
});

describe('orders sent one step ahead', () => {
  it('arrive before the previous report between boundaries, and after validation at an epoch end', async () => {
    const dir = tempDir('ringtrain-ahead-');
    const out = path.join(dir, 'run');
    coordinator = spawn(
      process.execPath,
      [CLI, 'coordinator', writeJob(dir, JOB), '--port', '0', '--host', '127.0.0.1', '--out', out],
      { stdio: 'ignore' },
    );
    const port = await waitForCoordinatorPort(out);
    const Control = loadProto().ringtrain.v1.Control;
    const control = new Control(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), GRPC_CHANNEL_OPTIONS);
    client = control;
    const stream = control.Session();
    const send = (message: WorkerMessage): void => void stream.write(message);
    const events: string[] = [];
    let sawStep4 = (): void => undefined;
    const step4 = new Promise<void>((resolve) => (sawStep4 = resolve));
    /** Resolves when order `step` has arrived, or after HOLD_BOUND_MS. */
    const waiters = new Map<number, () => void>();
    const orderOrBound = (step: number): Promise<void> =>
      events.includes(`order ${step}`)
        ? Promise.resolve()
        : new Promise((resolve) => {
            const timer = setTimeout(resolve, HOLD_BOUND_MS);
            waiters.set(step, () => {
              clearTimeout(timer);
              resolve();
            });
          });

    // Orders are handled one at a time, in arrival order, like a real worker; arrivals are logged at once.
    let handling = Promise.resolve();
    stream.on('data', (message: CoordinatorMessage__Output) => {
      if (message.kind === 'step' && message.step) {
        events.push(`order ${message.step.step}`);
        waiters.get(message.step.step)?.();
      }
      if (message.kind === 'eval' && message.eval) events.push(`eval ${message.eval.split}`);
      handling = handling.then(() => handle(message));
    });
    stream.on('error', () => undefined); // the coordinator is killed at the end

    const handle = async (message: CoordinatorMessage__Output): Promise<void> => {
      if (message.kind === 'welcome' && message.welcome) {
        const job = resolvedJobSchema.parse(JSON.parse(message.welcome.jobJson));
        send({
          ready: {
            generation: message.welcome.generation,
            paramCount: 17,
            backend: 'cpu', // the job's backend: a worker on another one is refused
            dataHash: loadDataset(job).hash,
          },
        });
      } else if (message.kind === 'step' && message.step) {
        const order = message.step;
        if (order.step === 4) sawStep4();
        await orderOrBound(order.step + 1);
        events.push(`report ${order.step}`);
        send({
          stepReport: {
            generation: order.generation,
            step: order.step,
            loss: 0.5,
            localCount: order.globalBatchSize,
            globalCount: order.globalBatchSize,
            timings: { computeMs: 1 },
            skipped: false,
            paramHash: order.wantParamHash ? 'scripted' : '',
            gradNorm: 1,
          },
        });
      } else if (message.kind === 'eval' && message.eval) {
        const count = message.eval.sampleIndices.length / 4;
        send({
          evalReport: {
            requestId: message.eval.requestId,
            count,
            lossSum: 0.5 * count,
            metricSums: { accuracy: count },
          },
        });
      }
    };

    send({
      hello: {
        host: 'scripted',
        dataAddress: '127.0.0.1:1',
        pid: process.pid,
        gpuIndex: -1,
        rankHint: -1,
        version: 'test',
      },
    });
    await Promise.race([
      step4,
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error(`no order for step 4; saw ${events.join(', ')}`)), 120_000),
      ),
    ]);

    const at = (event: string): number => {
      const index = events.indexOf(event);
      expect(index, `${event} in ${events.join(', ')}`).toBeGreaterThanOrEqual(0);
      return index;
    };
    // Steps 0, 1 and 3 are followed by nothing but the next step: its order is out before their report.
    for (const step of [0, 1, 3]) expect(at(`order ${step + 1}`)).toBeLessThan(at(`report ${step}`));
    // Step 2 ends epoch 0: validation comes between it and step 3, so nothing runs ahead of it.
    expect(at(`report 2`)).toBeLessThan(at('eval validation'));
    expect(at('eval validation')).toBeLessThan(at('order 3'));
  });
});
