// Named errors: how a worker is named in a failure, the exit codes of signals, and the one place
// that reads errno codes and error wording.
import { createServer } from 'node:net';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  describeReadFailure,
  describeWorker,
  errnoCode,
  isAddressInUse,
  isNotFound,
  NotEnoughWorkersError,
  PreemptedError,
  StoppedBySignalError,
  WorkerFailedError,
} from '../../shared/errors.js';
import { REPO_ROOT } from '../helpers/cli.js';

describe('naming a failed worker', () => {
  it('names a ranked worker by rank, host and pid', () => {
    const error = new WorkerFailedError({ rank: 1, host: 'host-b', pid: 42 }, 'control stream ended');
    expect(error.message).toBe('worker rank 1 (host-b, pid 42) failed: control stream ended');
    expect(error.rank).toBe(1);
    expect(error.exitCode).toBe(8);
  });

  it('names a worker without a rank by host, pid and data address, never "rank -1"', () => {
    const worker = { rank: -1, host: 'host-c', pid: 7, dataAddress: 'host-c:36111' };
    expect(describeWorker(worker)).toBe('worker on host-c (pid 7, data address host-c:36111)');
    expect(new WorkerFailedError(worker, 'x').message).not.toMatch(/rank -1/);
  });

  it('says "not enough workers" when no single worker is to blame', () => {
    const error = new NotEnoughWorkersError('only 1 of 2 workers joined within 600 s');
    expect(error.message).toBe('not enough workers: only 1 of 2 workers joined within 600 s');
    expect(error).toBeInstanceOf(WorkerFailedError);
    expect(error.exitCode).toBe(8);
  });
});

describe('signals', () => {
  it('exit 130 for SIGINT and 143 for SIGTERM, before and after training started', () => {
    expect(new StoppedBySignalError('SIGINT').exitCode).toBe(130);
    expect(new StoppedBySignalError('SIGTERM').exitCode).toBe(143);
    expect(new PreemptedError(3, 'runs/x', 'SIGINT').exitCode).toBe(130);
    expect(new PreemptedError(3, 'runs/x', 'SIGTERM').exitCode).toBe(143);
    expect(new PreemptedError(3, 'runs/x', 'SIGINT').message).toMatch(/^stopped by SIGINT after step 3;/);
  });
});

describe('errno and wording, read in one place', () => {
  it('recognises a port in use from a real socket and from grpc-js wording', async () => {
    const first = createServer();
    const port = await new Promise<number>((resolve) =>
      first.listen(0, '127.0.0.1', () => resolve((first.address() as { port: number }).port)),
    );
    const second = createServer();
    const error = await new Promise<unknown>((resolve) => {
      second.once('error', resolve);
      second.listen(port, '127.0.0.1');
    });
    first.close();
    expect(errnoCode(error)).toBe('EADDRINUSE');
    expect(isAddressInUse(error)).toBe(true);
    expect(isAddressInUse(new Error('No address added out of total 1 resolved'))).toBe(true);
    expect(isAddressInUse(new Error('connection refused'))).toBe(false);
  });

  it('describes a missing file in words', () => {
    let error: unknown;
    try {
      readFileSync(path.join('/nonexistent', 'file.csv'));
    } catch (caught) {
      error = caught;
    }
    expect(isNotFound(error)).toBe(true);
    expect(describeReadFailure(error)).toBe('file not found');
    expect(describeReadFailure(Object.assign(new Error('x'), { code: 'EACCES' }))).toBe('cannot read file (EACCES)');
  });

  it('no module outside shared/errors.ts tests errno codes or address-in-use wording', () => {
    const offenders: string[] = [];
    for (const dir of ['cli', 'coordinator', 'shared', 'worker', 'bench'])
      for (const file of sourceFiles(path.join(REPO_ROOT, dir))) {
        if (file.endsWith(path.join('shared', 'errors.ts'))) continue;
        const text = readFileSync(file, 'utf8');
        if (/ErrnoException|EADDRINUSE|code\s*[!=]==\s*'E[A-Z]+'|address already in use/.test(text))
          offenders.push(path.relative(REPO_ROOT, file));
      }
    expect(offenders).toEqual([]);
  });
});

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return sourceFiles(full);
    return name.endsWith('.ts') ? [full] : [];
  });
}
