// `bench train --peer pytorch`: the same job trained by PyTorch DistributedDataParallel over gloo
// (bench/peers/pytorch_ddp.py), in the same sitting, for a side-by-side row. Only dense stacks
// with a classification loss translate one to one; other jobs get one line saying why the peer
// was skipped. The peer's figures are printed, never asserted.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadDataset } from '../shared/data/dataset.js';
import type { Job } from '../shared/job-schema.js';
import { lossName } from '../shared/loss-spec.js';

export interface PeerResult {
  workers: number;
  samplesPerSecond: number;
  meanStepMs: number;
  threads: number;
  finalLoss: number;
  version: string;
}

const SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'peers', 'pytorch_ddp.py');
const PEER_ACTIVATIONS = new Set(['relu', 'tanh', 'sigmoid', 'linear', 'softmax']);
const CLASSIFICATION_LOSSES = new Set(['categoricalCrossentropy', 'sparseCategoricalCrossentropy']);

/** Why `job` cannot be given to the peer, or undefined when it can. */
export function peerUnsupported(job: Job): string | undefined {
  if (!CLASSIFICATION_LOSSES.has(lossName(job.loss))) return `loss ${lossName(job.loss)} (the peer trains classifiers)`;
  if (job.model.input.length !== 1) return 'a multi-dimensional input (the peer trains dense stacks)';
  const layers = job.model.layers ?? [];
  if (layers.length === 0) return 'a model not spelled as a YAML layer list';
  for (const layer of layers) {
    if (layer.type !== 'dense') return `layer type ${layer.type} (the peer trains dense stacks)`;
    if (!PEER_ACTIVATIONS.has(layer.activation)) return `activation ${layer.activation}`;
  }
  if (job.optimizer.weightDecay > 0 || job.optimizer.clipNorm > 0) return 'weightDecay or clipNorm';
  return undefined;
}

/** A Python that imports torch: RINGTRAIN_PYTHON, then Debian's /usr/bin/python3, then python3 on PATH. */
export async function findTorchPython(): Promise<string | undefined> {
  const candidates = [process.env['RINGTRAIN_PYTHON'], '/usr/bin/python3', 'python3'].filter(
    (c): c is string => c !== undefined && c !== '',
  );
  for (const candidate of candidates) {
    const ok = await new Promise<boolean>((resolve) => {
      const child = spawn(candidate, ['-c', 'import torch, torch.distributed as d; assert d.is_gloo_available()'], {
        stdio: 'ignore',
      });
      child.on('error', () => resolve(false));
      child.on('exit', (code) => resolve(code === 0));
    });
    if (ok) return candidate;
  }
  return undefined;
}

/** Runs the peer at one world size on the job's training split. */
export async function runPytorchPeer(
  python: string,
  job: Job,
  workers: number,
  steps: number,
  warmupSteps: number,
): Promise<PeerResult> {
  const dataset = loadDataset(job);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ringtrain-peer-'));
  try {
    const xFile = path.join(dir, 'x.f32');
    const yFile = path.join(dir, 'y.i64');
    await writeFile(xFile, dataset.train.x);
    await writeFile(yFile, classIndices(dataset.train.y, dataset.labelSize));
    const layers = (job.model.layers ?? []).map((layer) =>
      layer.type === 'dense' ? { units: layer.units, activation: layer.activation } : {},
    );
    const spec = {
      workers,
      steps,
      warmupSteps,
      seed: job.seed,
      batchSize: job.training.batchSize,
      inputSize: dataset.featureSize,
      layers,
      optimizer: job.optimizer,
      xFile,
      yFile,
      port: await freePort(),
    };
    const line = await runScript(python, [SCRIPT, JSON.stringify(spec)]);
    const result = JSON.parse(line) as Record<string, unknown>;
    return {
      workers,
      samplesPerSecond: Number(result['samplesPerSecond']),
      meanStepMs: Number(result['meanStepMs']),
      threads: Number(result['threads']),
      finalLoss: Number(result['finalLoss']),
      version: String(result['torch']),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Labels as int64 class indices (one-hot rows to their argmax). */
function classIndices(y: Float32Array, labelSize: number): BigInt64Array {
  const count = y.length / labelSize;
  const out = new BigInt64Array(count);
  for (let row = 0; row < count; row++) {
    if (labelSize === 1) {
      out[row] = BigInt(Math.round(y[row] ?? 0));
      continue;
    }
    let best = 0;
    for (let c = 1; c < labelSize; c++) if ((y[row * labelSize + c] ?? 0) > (y[row * labelSize + best] ?? 0)) best = c;
    out[row] = BigInt(best);
  }
  return out;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
    });
  });
}

/** The script's "done" line; its stderr is kept for the error if it fails. */
function runScript(python: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 600_000);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      const done = stdout.split('\n').find((l) => l.includes('"event": "done"'));
      if (code === 0 && done !== undefined) resolve(done);
      else
        reject(
          new Error(
            `the PyTorch peer failed (exit ${code ?? 'signal'}): ${stderr.trim().split('\n').slice(-3).join(' / ')}`,
          ),
        );
    });
  });
}
