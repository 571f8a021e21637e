import { describe, expect, it } from 'vitest';
import { autoDirection, EarlyStopping } from '../../coordinator/loop/early-stopping.js';
import { JobConfigError } from '../../shared/errors.js';

/** Feeds `values` of `monitor` and returns [improved, shouldStop, wait] per validation. */
function run(stopper: EarlyStopping, monitor: string, values: number[]): Array<[boolean, boolean, number]> {
  return values.map((value) => {
    const v = stopper.update({ [monitor]: value, 'train.loss': 9 });
    return [v.improved, v.shouldStop, v.wait];
  });
}

describe('EarlyStopping', () => {
  it('min mode: stops after `patience` validations without a lower value', () => {
    const stopper = new EarlyStopping({ monitor: 'validation.loss', patience: 2, minDelta: 0, mode: 'auto' });
    expect(run(stopper, 'validation.loss', [1.0, 0.8, 0.8, 0.7, 0.75, 0.9])).toEqual([
      [true, false, 0],
      [true, false, 0],
      [false, false, 1],
      [true, false, 0],
      [false, false, 1],
      [false, true, 2],
    ]);
    expect(stopper.update({ 'validation.loss': 0.71 }).best).toBe(0.7);
  });

  it('max mode: accuracy must rise by more than minDelta to count', () => {
    const stopper = new EarlyStopping({ monitor: 'validation.accuracy', patience: 3, minDelta: 0.01, mode: 'auto' });
    expect(stopper.direction).toBe('max');
    expect(run(stopper, 'validation.accuracy', [0.5, 0.505, 0.52, 0.525, 0.529, 0.53])).toEqual([
      [true, false, 0],
      [false, false, 1],
      [true, false, 0],
      [false, false, 1],
      [false, false, 2],
      [false, true, 3],
    ]);
  });

  it('min mode with minDelta: small drops do not reset the wait', () => {
    const stopper = new EarlyStopping({ monitor: 'validation.mae', patience: 2, minDelta: 0.1, mode: 'min' });
    expect(run(stopper, 'validation.mae', [1.0, 0.95, 0.85, 0.8, 0.78])).toEqual([
      [true, false, 0],
      [false, false, 1],
      [true, false, 0],
      [false, false, 1],
      [false, true, 2],
    ]);
  });

  it('an explicit mode overrides auto, and auto picks max only for accuracy-like names', () => {
    expect(new EarlyStopping({ monitor: 'validation.accuracy', patience: 1, minDelta: 0, mode: 'min' }).direction).toBe(
      'min',
    );
    expect(autoDirection('validation.binaryAccuracy')).toBe('max');
    expect(autoDirection('train.loss')).toBe('min');
    expect(autoDirection('validation.mse')).toBe('min');
  });

  it('a NaN value is never an improvement', () => {
    const stopper = new EarlyStopping({ monitor: 'validation.loss', patience: 1, minDelta: 0, mode: 'min' });
    expect(stopper.update({ 'validation.loss': NaN })).toMatchObject({
      improved: false,
      shouldStop: true,
      best: Infinity,
    });
  });

  it('names the missing monitored key and the keys that exist', () => {
    const stopper = new EarlyStopping({ monitor: 'validation.accuracy', patience: 1, minDelta: 0, mode: 'auto' });
    expect(() => stopper.update({ 'validation.loss': 1, 'train.loss': 1 })).toThrow(JobConfigError);
    expect(() => stopper.update({ 'validation.loss': 1 })).toThrow(
      /"validation\.accuracy" is not among the reported metrics \(validation\.loss\)/,
    );
  });

  it('exported state survives JSON and continues the count', () => {
    const options = { monitor: 'validation.loss', patience: 3, minDelta: 0, mode: 'min' as const };
    const before = new EarlyStopping(options);
    run(before, 'validation.loss', [0.5, 0.6, 0.7]);
    const after = new EarlyStopping(options);
    after.importState(JSON.parse(JSON.stringify(before.exportState())) as Record<string, number>);
    expect(after.update({ 'validation.loss': 0.55 })).toEqual({
      improved: false,
      shouldStop: true,
      best: 0.5,
      wait: 3,
    });

    const fresh = new EarlyStopping(options);
    fresh.importState(JSON.parse(JSON.stringify(new EarlyStopping(options).exportState())) as Record<string, number>);
    expect(fresh.update({ 'validation.loss': 100 }).improved).toBe(true);
    expect(() => fresh.importState({ best: 1 })).toThrow(/not an early-stopping state/);
  });

  it('rejects a non-positive patience and a negative minDelta', () => {
    expect(() => new EarlyStopping({ monitor: 'validation.loss', patience: 0, minDelta: 0, mode: 'min' })).toThrow(
      /patience/,
    );
    expect(() => new EarlyStopping({ monitor: 'validation.loss', patience: 1, minDelta: -1, mode: 'min' })).toThrow(
      /minDelta/,
    );
  });
});
