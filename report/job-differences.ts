// The settings in which runs' jobs differ, as dotted paths (`optimizer.learningRate`), so that an
// overlay of curves says what was changed between them. Pure.

/** Every leaf of `value` as [dotted path, JSON text]; arrays are leaves (a layer list is one setting). */
export function leaves(value: unknown, prefix = ''): Array<[string, string]> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return [[prefix, JSON.stringify(value)]];
  return Object.entries(value as Record<string, unknown>).flatMap(([key, child]) =>
    leaves(child, prefix === '' ? key : `${prefix}.${key}`),
  );
}

/** The paths whose values are not the same in every job, each with every job's value ('—' where absent). */
export function jobDifferences(
  jobs: ReadonlyArray<Record<string, unknown>>,
): Array<{ path: string; values: string[] }> {
  const maps = jobs.map((job) => new Map(leaves(job)));
  const paths = [...new Set(maps.flatMap((m) => [...m.keys()]))].sort();
  return paths
    .map((p) => ({ path: p, values: maps.map((m) => m.get(p) ?? '—') }))
    .filter((row) => new Set(row.values).size > 1);
}
