// A strict reader of the Prometheus text exposition format (version 0.0.4), for tests: every
// sample line must parse, and every sample must belong to a family announced by # HELP and # TYPE.
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Exposition {
  samples: Sample[];
  types: Map<string, string>;
  /** The one sample `name{labels}`; throws when there is none or several. */
  value(name: string, labels?: Record<string, string>): number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parseExposition(text: string): Exposition {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const helps = new Set<string>();
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (meta !== null) {
      if (meta[1] === 'HELP') helps.add(meta[2] ?? '');
      else types.set(meta[2] ?? '', meta[3] ?? '');
      continue;
    }
    const match = SAMPLE.exec(line);
    if (match === null) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[3] ?? '').matchAll(LABEL)) labels[key ?? ''] = value ?? '';
    const value = Number(match[4] === '+Inf' ? Infinity : match[4]);
    if (Number.isNaN(value) && match[4] !== 'NaN') throw new Error(`bad value in: ${line}`);
    samples.push({ name: match[1] ?? '', labels, value });
  }
  for (const sample of samples) {
    const family = [...types.keys()].find(
      (name) =>
        sample.name === name ||
        (sample.name.startsWith(name) && /^_(bucket|sum|count)$/.test(sample.name.slice(name.length))),
    );
    if (family === undefined || !helps.has(family)) throw new Error(`${sample.name} has no # HELP/# TYPE`);
  }
  return {
    samples,
    types,
    value(name, labels = {}) {
      const found = samples.filter(
        (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
      );
      if (found.length !== 1) throw new Error(`${found.length} samples of ${name} ${JSON.stringify(labels)}`);
      return (found[0] as Sample).value;
    },
  };
}
