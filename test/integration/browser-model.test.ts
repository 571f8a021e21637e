// The exported model in a real browser: Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) loads TensorFlow.js from node_modules and the model by URL, both from a local
// HTTP server on 127.0.0.1, predicts raw rows, and must agree with Node and with the run's test
// accuracy. Every request the page makes is checked to go to that server: no network.
// Without Chromium the test is skipped with the reason printed, except under CI=true, where it fails.
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from '../../lib/model-io.js';
import { selectBackend } from '../../worker/backend/backend.js';
import { REPO_ROOT, tempDir } from '../helpers/cli.js';
import { trainTable, type TrainedTable } from '../helpers/trained-tables.js';

const CHROMIUM = process.env['RINGTRAIN_CHROMIUM'] ?? '/usr/bin/chromium';
const missing = existsSync(CHROMIUM) ? undefined : `${CHROMIUM} not found (apt-get install chromium)`;
if (missing !== undefined && process.env['CI'] !== 'true')
  console.log(`browser-model.test.ts: SKIPPED: ${missing}; CI=true makes this a failure`);

const PAGE = `<!doctype html><html><head><script src="/tfjs/tf.min.js"></script></head><body></body></html>`;

/** Serves the page, tfjs's browser bundle and the model folder; nothing else (404). */
function serve(modelDir: string): Promise<Server> {
  const files: Record<string, { file: string; type: string }> = {
    '/tfjs/tf.min.js': {
      file: path.join(REPO_ROOT, 'node_modules/@tensorflow/tfjs/dist/tf.min.js'),
      type: 'text/javascript',
    },
    '/model/model.json': { file: path.join(modelDir, 'model.json'), type: 'application/json' },
    '/model/weights.bin': { file: path.join(modelDir, 'weights.bin'), type: 'application/octet-stream' },
  };
  const server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    if (url.pathname === '/') {
      response.writeHead(200, { 'content-type': 'text/html' }).end(PAGE);
      return;
    }
    const entry = files[url.pathname];
    if (entry === undefined) response.writeHead(404).end();
    else response.writeHead(200, { 'content-type': entry.type }).end(readFileSync(entry.file));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

describe.skipIf(missing !== undefined && process.env['CI'] !== 'true')('exported model in Chromium', () => {
  const dir = tempDir();
  let penguins: TrainedTable;
  let server: Server | undefined;

  beforeAll(async () => {
    if (missing !== undefined) throw new Error(`CI=true and the browser test cannot run: ${missing}`);
    await selectBackend('cpu');
    penguins = await trainTable('classifier', dir, 8);
    server = await serve(path.join(penguins.runDir, 'model'));
  });

  afterAll(async () => {
    await new Promise((resolve) => (server === undefined ? resolve(undefined) : server.close(resolve)));
  });

  it('tf.loadLayersModel(url) predicts raw rows as Node does, with no request leaving 127.0.0.1', async () => {
    const origin = `http://127.0.0.1:${(server?.address() as AddressInfo).port}`;
    const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
    const requested: string[] = [];
    try {
      const page = await browser.newPage();
      // Anything not served by our server is refused, so the test cannot pass by reaching out.
      await page.route('**/*', (route) => {
        const url = route.request().url();
        requested.push(url);
        return url.startsWith(`${origin}/`) ? route.continue() : route.abort();
      });
      await page.goto(`${origin}/`);
      const inBrowser = await page.evaluate(async (rows) => {
        const tfjs = (globalThis as unknown as { tf: typeof tf }).tf;
        await tfjs.setBackend('cpu'); // the same kernels as Node's cpu backend, so values compare closely
        const model = await tfjs.loadLayersModel('/model/model.json');
        const meta = (
          (await (await fetch('/model/model.json')).json()) as {
            userDefinedMetadata: { ringtrain: { classNames: string[] } };
          }
        ).userDefinedMetadata.ringtrain;
        const probabilities = (model.predict(tfjs.tensor2d(rows)) as tf.Tensor).arraySync() as number[][];
        return { probabilities, classNames: meta.classNames };
      }, penguins.testX);

      const loaded = await loadModel(penguins.runDir);
      const inNode = tf.tidy(
        () => (loaded.model.predict(tf.tensor2d(penguins.testX)) as tf.Tensor).arraySync() as number[][],
      );
      loaded.model.dispose();
      expect(inBrowser.probabilities).toHaveLength(penguins.testX.length);
      inBrowser.probabilities.forEach((row, i) =>
        row.forEach((p, k) => expect(Math.abs(p - (inNode[i]?.[k] as number))).toBeLessThan(1e-5)),
      );
      const names = inBrowser.classNames;
      const correct = inBrowser.probabilities.filter((row, i) => {
        const best = row.reduce((b, p, k) => (p > (row[b] as number) ? k : b), 0);
        return names[best] === penguins.testLabels[i];
      }).length;
      expect(
        Math.abs(correct / penguins.testLabels.length - (penguins.test['accuracy'] as number)),
      ).toBeLessThanOrEqual(0.01);
      expect(requested.length).toBeGreaterThan(0);
      expect(requested.every((url) => url.startsWith(`${origin}/`))).toBe(true);
    } finally {
      await browser.close();
    }
  });
});
