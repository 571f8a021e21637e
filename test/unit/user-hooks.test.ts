import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserHooks } from '../../coordinator/user-hooks.js';
import { HookError, JobConfigError } from '../../shared/errors.js';

/** Hooks modules report calls by appending to this global array. */
interface HookCall {
  hook: string;
  payload: unknown;
  frozen: boolean;
}
const calls = ((globalThis as { __ringtrainHookCalls?: HookCall[] }).__ringtrainHookCalls = []);

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringtrain-hooks-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

let moduleCount = 0;
/** Writes a fresh .mjs module (a new file each time: ES modules are cached by URL). */
function writeModule(source: string): string {
  const file = path.join(dir, `hooks-${moduleCount++}.mjs`);
  fs.writeFileSync(file, source);
  return file;
}

describe('UserHooks', () => {
  it('calls the exported hooks with a frozen copy of the payload, awaiting async ones', async () => {
    const file = writeModule(`
      const record = (hook, payload) => globalThis.__ringtrainHookCalls.push({ hook, payload, frozen: Object.isFrozen(payload) && Object.isFrozen(payload.metrics) });
      export function onTrainBegin(payload) { record('onTrainBegin', payload); }
      export async function onEpochEnd(payload) { await new Promise((r) => setTimeout(r, 5)); record('onEpochEnd', payload); }
      export const helper = 42;
    `);
    const hooks = await UserHooks.load(file);
    expect(hooks.names.sort()).toEqual(['onEpochEnd', 'onTrainBegin']);
    const payload = { epoch: 1, step: 40, metrics: { 'train.loss': 0.3 } };
    await hooks.call('onEpochEnd', payload);
    await hooks.call('onTrainBegin', { worldSize: 2 });
    await hooks.call('onTrainEnd', { summary: {} });
    expect(calls.splice(0)).toEqual([
      { hook: 'onEpochEnd', payload, frozen: true },
      { hook: 'onTrainBegin', payload: { worldSize: 2 }, frozen: true },
    ]);
    expect(Object.isFrozen(payload)).toBe(false);
  });

  it('wraps a throwing hook in a HookError naming the hook and the module', async () => {
    const file = writeModule(`export function onCheckpoint() { throw new Error('disk quota exceeded'); }`);
    const hooks = await UserHooks.load(file);
    const error = await hooks.call('onCheckpoint', { step: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HookError);
    expect((error as HookError).message).toBe(`hook onCheckpoint in ${file} threw: disk quota exceeded`);
    expect(((error as HookError).cause as Error).message).toBe('disk quota exceeded');
  });

  it('a hook that tries to change its payload fails instead of changing training', async () => {
    const file = writeModule(`export function onValidationEnd(p) { p.metrics['validation.loss'] = 0; }`);
    const hooks = await UserHooks.load(file);
    const payload = { metrics: { 'validation.loss': 0.4 } };
    await expect(hooks.call('onValidationEnd', payload)).rejects.toThrow(
      /hook onValidationEnd in .* threw: .*read only/,
    );
    expect(payload.metrics['validation.loss']).toBe(0.4);
  });

  it('reports a missing module and a module that does not import', async () => {
    const missing = path.join(dir, 'absent.mjs');
    await expect(UserHooks.load(missing)).rejects.toThrow(JobConfigError);
    await expect(UserHooks.load(missing)).rejects.toThrow(`hooks ${missing}: file not found`);
    const broken = writeModule('export function onTrainEnd( {');
    await expect(UserHooks.load(broken)).rejects.toThrow(new RegExp(`hooks ${broken}: cannot import the module`));
  });

  it('reports non-function hooks and likely typos of hook names', async () => {
    const file = writeModule(
      `export const onTrainEnd = 'soon'; export function onEpochEnds() {} export function ontrainbegin() {}`,
    );
    const error = (await UserHooks.load(file).catch((e: unknown) => e)) as JobConfigError;
    expect(error).toBeInstanceOf(JobConfigError);
    expect(error.problems).toEqual([
      expect.stringContaining('export "onEpochEnds" is not a hook name; did you mean "onEpochEnd"?'),
      'export "onTrainEnd" must be a function, got string',
      expect.stringContaining('export "ontrainbegin" is not a hook name; did you mean "onTrainBegin"?'),
    ]);
  });

  it('without a module, there are no hooks and calls do nothing', async () => {
    const hooks = await UserHooks.load(undefined);
    expect(hooks.names).toEqual([]);
    await expect(hooks.call('onTrainBegin', {})).resolves.toBeUndefined();
  });
});
