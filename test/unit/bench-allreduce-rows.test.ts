// `bench allreduce` option parsing and result shaping: --link specs, the figures of a row (busbw,
// ratios to the same run's TCP and link), and how ringtrain's and gloo's per-rank timings become
// one row (the slowest rank per iteration, then the median).
import { describe, expect, it } from 'vitest';
import { aggregate, figures } from '../../bench/allreduce-rows.js';
import { aggregateGloo } from '../../bench/gloo-peer.js';
import { parseLinkSpec } from '../../bench/link-lab.js';
import { parseIntList } from '../../bench/units.js';

const BASELINES = { tcpGBps: 2, tcpBidirGBps: 1 };

describe('parseLinkSpec', () => {
  it('reads a rate in tc units and an optional one-way delay', () => {
    expect(parseLinkSpec('1gbit')).toEqual({ rateBitsPerSecond: 1e9, text: '1gbit' });
    expect(parseLinkSpec('100mbit,100us')).toEqual({ rateBitsPerSecond: 1e8, delayUs: 100, text: '100mbit,100us' });
    expect(parseLinkSpec('2.5Gbit, 1ms')).toMatchObject({ rateBitsPerSecond: 2.5e9, delayUs: 1000 });
  });

  it.each(['1gbps', '1 gbit', 'gbit', '1gbit,100', '1gbit,1us,2', '', '1kbit'])(
    'refuses "%s" naming --link',
    (text) => {
      expect(() => parseLinkSpec(text)).toThrow(/^--link: /);
    },
  );
});

describe('--workers list', () => {
  it('reads world sizes and refuses one out of range', () => {
    expect(parseIntList('--workers', 1, 64)('2,4,8')).toEqual([2, 4, 8]);
    expect(() => parseIntList('--workers', 1, 64)('2,0')).toThrow(/--workers: "0" must be an integer from 1 to 64/);
  });
});

describe('row figures', () => {
  it('follows nccl-tests: busbw = algbw·2(N−1)/N, and divides it by the TCP baselines and the link', () => {
    const row = figures(8e6, 0.01, 4, { link: parseLinkSpec('1gbit') }, BASELINES);
    expect(row.algbwGBps).toBeCloseTo(0.8, 12);
    expect(row.busbwGBps).toBeCloseTo(1.2, 12);
    expect(row.busbwOverTcp).toBeCloseTo(0.6, 12);
    expect(row.busbwOverTcpBidir).toBeCloseTo(1.2, 12);
    expect(row).toMatchObject({ link: '1gbit', linkGBps: 0.125 });
    expect(row.busbwOverLink).toBeCloseTo(9.6, 12);
  });

  it('has no link fields without --link', () => {
    expect(Object.keys(figures(4096, 0.001, 2, {}, BASELINES))).not.toContain('link');
  });

  it('takes the slowest rank per iteration, then the median, and needs bit-identical ranks', () => {
    const result = (seconds: number[], digest = 'a') => ({
      bytes: 4096,
      seconds,
      verified: true,
      maxAbsError: 0,
      digest,
    });
    const row = aggregate(4096, [result([1, 5, 3]), result([2, 1, 4])], 2, { compression: 'none' }, BASELINES);
    expect(row).toMatchObject({ kind: 'ringtrain', seconds: 4, iterations: 3, verified: true, workers: 2 });
    const diverged = aggregate(4096, [result([1]), result([1], 'b')], 2, { compression: 'none' }, BASELINES);
    expect(diverged.verified).toBe(false);
  });
});

describe('gloo rows', () => {
  it('take the slowest rank per iteration, then the median, over the iterations every rank did', () => {
    const report = (seconds: number[], verified = true, bytes = 4096) => ({
      event: 'result',
      bytes,
      seconds,
      verified,
      maxAbsError: 0,
    });
    expect(aggregateGloo(4096, [report([3, 1, 2, 9]), report([1, 2, 2])])).toEqual({
      bytes: 4096,
      seconds: 2,
      iterations: 3,
      verified: true,
      maxAbsError: 0,
    });
    expect(aggregateGloo(4096, [report([1]), report([1], false)]).verified).toBe(false);
    expect(aggregateGloo(4096, [report([1]), report([1], true, 8192)]).verified).toBe(false);
  });
});
