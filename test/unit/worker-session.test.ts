// The coordinator's end of a control stream, driven by a stream double that records writes and
// emits the worker's messages: answers to step orders are matched by generation as well as step.
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { WorkerMessage__Output } from '../../proto/generated/ringtrain/v1/WorkerMessage.js';
import { WorkerSession, type SessionStream } from '../../coordinator/session/worker-session.js';
import { componentLogger } from '../../shared/logger.js';

class StreamDouble extends EventEmitter {
  readonly written: unknown[] = [];
  write(message: unknown): boolean {
    this.written.push(message);
    return true;
  }
  end(): void {
    this.emit('end');
  }
  destroy(): void {
    this.emit('close');
  }
}

function open(): { session: WorkerSession; stream: StreamDouble } {
  const stream = new StreamDouble();
  const hello = { host: 'test', pid: 1 } as unknown as ConstructorParameters<typeof WorkerSession>[1];
  const logger = componentLogger('test');
  return { session: new WorkerSession(1, hello, stream as unknown as SessionStream, logger), stream };
}

const report = (generation: number, step: number): WorkerMessage__Output =>
  ({ kind: 'stepReport', stepReport: { generation, step, loss: 1 } }) as unknown as WorkerMessage__Output;
const aborted = (generation: number, step: number): WorkerMessage__Output =>
  ({
    kind: 'stepAborted',
    stepAborted: { generation, step, completedSteps: step, reason: 'ring closed' },
  }) as unknown as WorkerMessage__Output;

describe('WorkerSession.waitStep', () => {
  it('takes the answer of its own generation, not a late one for the same step of an old generation', async () => {
    const { session, stream } = open();
    // An order sent ahead in generation 1 was answered after the ring broke...
    stream.emit('data', aborted(1, 7));
    // ...and generation 2 runs step 7 again.
    const answer = session.waitStep(2, 7, 5_000);
    stream.emit('data', report(2, 7));
    await expect(answer).resolves.toMatchObject({ kind: 'done', report: { generation: 2, step: 7 } });
    await expect(session.waitStep(1, 7, 5_000)).resolves.toMatchObject({ kind: 'aborted', completedSteps: 7 });
  });

  it('keeps a report that arrives before anyone waits for it (the step sent ahead)', async () => {
    const { session, stream } = open();
    stream.emit('data', report(3, 11));
    await expect(session.waitStep(3, 11, 5_000)).resolves.toMatchObject({ kind: 'done' });
  });
});

describe('a WorkerFailure from the worker', () => {
  const failure = (message: string): WorkerMessage__Output =>
    ({ kind: 'failure', failure: { code: 'BackendUnavailableError', message } }) as unknown as WorkerMessage__Output;

  function openUnranked(): { session: WorkerSession; stream: StreamDouble; ended: () => boolean } {
    const stream = new StreamDouble();
    let ended = false;
    stream.on('end', () => (ended = true));
    const hello = { host: 'host-b', pid: 42, dataAddress: 'host-b:36111' } as unknown as ConstructorParameters<
      typeof WorkerSession
    >[1];
    const session = new WorkerSession(2, hello, stream as unknown as SessionStream, componentLogger('test'));
    return { session, stream, ended: () => ended };
  }

  it('fails what waits on the worker with its own reason, naming an unranked worker by host, pid and address', async () => {
    const { session, stream, ended } = openUnranked();
    const ready = session.waitReady(1, 5_000);
    stream.emit('data', failure('backend "tensorflow" is unavailable'));
    await expect(ready).rejects.toThrow(
      /^worker on host-b \(pid 42, data address host-b:36111\) failed: backend "tensorflow" is unavailable$/,
    );
    // Our side is ended, which tells the worker that its reason arrived and it may exit.
    expect(ended()).toBe(true);
  });

  it('names a ranked worker by rank', async () => {
    const { session, stream } = openUnranked();
    session.rank = 1;
    const step = session.waitStep(1, 0, 5_000);
    stream.emit('data', failure('memory access out of bounds'));
    await expect(step).rejects.toThrow(/^worker rank 1 \(host-b, pid 42\) failed: memory access out of bounds$/);
  });
});
