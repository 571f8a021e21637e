// `--http` mistakes end before anything starts: a malformed value is a usage error (exit 2), a
// taken port is exit 7 naming --http, and neither leaves a run directory behind.
import { existsSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli, smallMnistJob, tempDir, writeJob } from '../helpers/cli.js';

describe('ringtrain train --http', () => {
  const dir = tempDir();
  const job = writeJob(dir, smallMnistJob({ data: { format: 'mnist', limit: 300 } }));
  const taken = net.createServer();
  afterAll(async () => await new Promise<void>((resolve) => taken.close(() => resolve())));

  it('refuses a value that is neither a port nor ADDR:PORT (exit 2)', async () => {
    const out = path.join(dir, 'bad-flag');
    const result = await runCli(['train', job, '--out', out, '--http', 'localhost']);
    expect(result.code).toBe(2);
    expect(result.stderr.trim()).toMatch(
      /^ringtrain: option '--http <PORT\|ADDR:PORT>' argument 'localhost' is invalid/,
    );
    expect(existsSync(out)).toBe(false);
  });

  it('refuses a bad http: in the job file (exit 2)', async () => {
    const out = path.join(dir, 'bad-job');
    const bad = writeJob(dir, smallMnistJob({ http: 'everywhere' }), 'bad-http.yaml');
    const result = await runCli(['train', bad, '--out', out]);
    expect(result.code).toBe(2);
    expect(result.stderr.trim()).toMatch(/^ringtrain: .*http.*give a port/);
    expect(existsSync(out)).toBe(false);
  });

  it('stops with exit 7 naming --http when the port is taken, leaving no run directory', async () => {
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', () => resolve()));
    const port = (taken.address() as net.AddressInfo).port;
    const out = path.join(dir, 'taken');
    const result = await runCli(['train', job, '--out', out, '--http', String(port)]);
    expect(result.code, result.stderr).toBe(7);
    expect(result.stderr.trim()).toBe(
      `ringtrain: cannot listen on 127.0.0.1:${port}: address already in use; pick another --http`,
    );
    expect(existsSync(out)).toBe(false);
  });
});
