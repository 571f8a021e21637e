// The job's `hooks` module: a local ES module whose named exports are called at fixed points of
// training. Loading checks the module up front (before any worker starts), so a typo in a hook
// name or a non-function export is a clear configuration error rather than a silent no-op.
// Hooks get a deep-frozen copy of their payload: they observe training, they cannot change it.
// They run as one more set of train() callbacks (training-callbacks.ts), through asCallbacks().
import * as fsp from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { HookError, JobConfigError, describeError } from '../shared/errors.js';
import type { CallbackSource } from './training-callbacks.js';

export const HOOK_NAMES = ['onTrainBegin', 'onEpochEnd', 'onValidationEnd', 'onCheckpoint', 'onTrainEnd'] as const;
export type HookName = (typeof HOOK_NAMES)[number];

type HookFunction = (payload: Readonly<Record<string, unknown>>) => unknown;

export class UserHooks {
  readonly names: HookName[];

  private constructor(
    /** The module's path, or undefined for a job without hooks. */
    readonly modulePath: string | undefined,
    private readonly hooks: ReadonlyMap<HookName, HookFunction>,
  ) {
    this.names = [...hooks.keys()];
  }

  /** Imports the module (pathToFileURL); a missing file or an import error is a clear JobConfigError naming the file; exports that are not functions, or unknown export names that look like typos of hook names (e.g. onEpochEnds), are reported. */
  static async load(modulePath: string | undefined): Promise<UserHooks> {
    if (modulePath === undefined) return new UserHooks(undefined, new Map());
    const source = `hooks ${modulePath}`;
    try {
      await fsp.access(modulePath);
    } catch (cause) {
      throw new JobConfigError(
        source,
        ['file not found; fix the job\'s "hooks" path (relative paths resolve against the job file)'],
        { cause },
      );
    }
    let exports: Record<string, unknown>;
    try {
      exports = (await import(pathToFileURL(modulePath).href)) as Record<string, unknown>;
    } catch (cause) {
      throw new JobConfigError(source, [`cannot import the module: ${describeError(cause).split('\n')[0] ?? ''}`], {
        cause,
      });
    }
    const { hooks, problems } = inspectExports(exports);
    if (problems.length > 0) throw new JobConfigError(source, problems);
    return new UserHooks(modulePath, hooks);
  }

  /** Calls the hook (awaiting a returned promise) with a frozen copy of `payload`; a throw becomes HookError(hook, module, {cause}). A hook the module lacks is a no-op. */
  async call(hook: HookName, payload: Record<string, unknown>): Promise<void> {
    const fn = this.hooks.get(hook);
    if (fn === undefined) return;
    const frozen = deepFreeze(structuredClone(payload));
    try {
      await fn(frozen);
    } catch (cause) {
      throw new HookError(hook, this.modulePath ?? '(no module)', { cause });
    }
  }
}

/** The hooks as callbacks: each gets its documented payload (a frozen copy), never the event's methods. */
export function hooksAsCallbacks(hooks: UserHooks): CallbackSource {
  return {
    reportsOwnErrors: true,
    callbacks: {
      onTrainBegin: ({ job, worldSize, startStep, runDir }) =>
        hooks.call('onTrainBegin', { job, worldSize, startStep, runDir }),
      onValidationEnd: ({ step, epoch, metrics }) => hooks.call('onValidationEnd', { step, epoch, metrics }),
      onCheckpoint: ({ step, dir, metrics }) => hooks.call('onCheckpoint', { step, dir, metrics }),
      onEpochEnd: ({ epoch, step, metrics }) => hooks.call('onEpochEnd', { epoch, step, metrics }),
      onTrainEnd: ({ summary }) => hooks.call('onTrainEnd', { summary }),
    },
  };
}

/** Splits a module namespace into hooks and problems (non-functions, likely typos). */
function inspectExports(exports: Record<string, unknown>): { hooks: Map<HookName, HookFunction>; problems: string[] } {
  const hooks = new Map<HookName, HookFunction>();
  const problems: string[] = [];
  // Sorted, so problems come in the same order under any module loader.
  for (const [name, value] of Object.entries(exports).sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (isHookName(name)) {
      if (typeof value === 'function') hooks.set(name, value as HookFunction);
      else problems.push(`export "${name}" must be a function, got ${value === null ? 'null' : typeof value}`);
      continue;
    }
    const meant = likelyHookName(name);
    if (meant !== undefined)
      problems.push(`export "${name}" is not a hook name; did you mean "${meant}"? (hooks: ${HOOK_NAMES.join(', ')})`);
  }
  const fallback = exports['default'];
  if (hooks.size === 0 && fallback !== null && typeof fallback === 'object' && Object.keys(fallback).some(isHookName)) {
    problems.push(`hooks must be named exports (export function onEpochEnd ...), not properties of the default export`);
  }
  return { hooks, problems };
}

function isHookName(name: string): name is HookName {
  return (HOOK_NAMES as readonly string[]).includes(name);
}

/** The hook `name` was probably meant to be: same letters ignoring case, or within edit distance 2. */
function likelyHookName(name: string): HookName | undefined {
  const lower = name.toLowerCase();
  return HOOK_NAMES.find((hook) => hook.toLowerCase() === lower || editDistance(hook.toLowerCase(), lower) <= 2);
}

/** Levenshtein distance; names are short, so the O(a·b) table is fine. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/** Freezes every plain object and array reachable from `value` (typed arrays cannot be frozen). */
function deepFreeze<T>(value: T, seen = new Set<object>()): T {
  if (value === null || typeof value !== 'object' || seen.has(value) || ArrayBuffer.isView(value)) return value;
  seen.add(value);
  for (const child of Object.values(value)) deepFreeze(child, seen);
  return Object.freeze(value);
}
