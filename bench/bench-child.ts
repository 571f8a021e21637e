// The link between a benchmark and the processes it measures: each child is the ringtrain CLI
// running a hidden `bench` subcommand that reports JSON lines on stdout ({"event": ...}) and
// takes JSON lines on stdin. Logs stay on stderr. This is the whole rendezvous: children report
// their ports, the parent tells every child all addresses.
import { spawn, type ChildProcess } from 'node:child_process';
import * as readline from 'node:readline';
import { cliEntry, LocalWorkers, WORKER_NODE_FLAGS } from '../coordinator/local-workers.js';
import { RingtrainError } from '../shared/errors.js';

export interface BenchMessage {
  event: string;
  [field: string]: unknown;
}

interface Waiter {
  event: string;
  resolve(message: BenchMessage): void;
  reject(error: Error): void;
}

export class BenchChild {
  private readonly queue: BenchMessage[] = [];
  private waiter: Waiter | undefined;
  private exitError: Error | undefined;
  readonly exited: Promise<number | null>;

  private constructor(
    private readonly child: ChildProcess,
    readonly name: string,
  ) {
    readline.createInterface({ input: child.stdout! }).on('line', (line) => this.onLine(line));
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.fail(new RingtrainError(`${name} exited (code ${code ?? '-'}, signal ${signal ?? '-'}) before reporting`));
        resolve(code);
      });
    });
  }

  /** Starts `ringtrain <args>` (behind `prefix`, e.g. `ip netns exec NS`); stderr goes to this process's stderr. */
  static spawn(name: string, args: string[], prefix: readonly string[] = []): BenchChild {
    // Measured children stand in for workers, so they start with a worker's flags and environment.
    const argv = [...prefix, process.execPath, ...WORKER_NODE_FLAGS, cliEntry(), ...args];
    const child = spawn(argv[0]!, argv.slice(1), {
      stdio: ['pipe', 'pipe', 'inherit'],
      env: LocalWorkers.workerEnv(undefined, process.env),
    });
    return new BenchChild(child, name);
  }

  /** Starts any program that speaks the same JSON-lines protocol (a peer's script). */
  static spawnProgram(name: string, argv: readonly string[], env: NodeJS.ProcessEnv = process.env): BenchChild {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'], env });
    return new BenchChild(child, name);
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  send(message: Record<string, unknown>): void {
    this.child.stdin!.write(`${JSON.stringify(message)}\n`);
  }

  /** The next message; it must be `event` (an {"event":"error"} report or an exit rejects). */
  next(event: string, timeoutMs: number): Promise<BenchMessage> {
    const queued = this.queue.shift();
    if (queued !== undefined) return Promise.resolve(this.check(queued, event));
    if (this.exitError !== undefined) return Promise.reject(this.exitError);
    return new Promise<BenchMessage>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new RingtrainError(`${this.name} sent no "${event}" within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = {
        event,
        resolve: (message) => {
          clearTimeout(timer);
          resolve(message);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
    });
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }

  private onLine(line: string): void {
    let message: BenchMessage;
    try {
      message = JSON.parse(line) as BenchMessage;
    } catch {
      return; // not ours (a library printing to stdout)
    }
    const waiter = this.waiter;
    if (waiter === undefined) {
      this.queue.push(message);
      return;
    }
    this.waiter = undefined;
    try {
      waiter.resolve(this.check(message, waiter.event));
    } catch (error) {
      waiter.reject(error as Error);
    }
  }

  private check(message: BenchMessage, event: string): BenchMessage {
    if (message.event === 'error') throw new RingtrainError(`${this.name}: ${String(message['message'])}`);
    if (message.event !== event)
      throw new RingtrainError(`${this.name} sent "${message.event}" where "${event}" was expected`);
    return message;
  }

  private fail(error: Error): void {
    this.exitError = error;
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.reject(error);
  }
}

/** Writes one report line for the parent (child side of the protocol). */
export function report(message: BenchMessage): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

/** Reads the next JSON line from stdin (child side of the protocol). */
export async function readOrder(timeoutMs: number): Promise<Record<string, unknown>> {
  const lines = readline.createInterface({ input: process.stdin });
  try {
    const line = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new RingtrainError(`no order from the parent within ${timeoutMs} ms`)),
        timeoutMs,
      );
      lines.once('line', (text) => {
        clearTimeout(timer);
        resolve(text);
      });
      lines.once('close', () => {
        clearTimeout(timer);
        reject(new RingtrainError('the parent closed stdin before sending an order'));
      });
    });
    return JSON.parse(line) as Record<string, unknown>;
  } finally {
    lines.close();
  }
}
