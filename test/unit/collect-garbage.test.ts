import { describe, expect, it } from 'vitest';
import { collectGarbage } from '../../shared/collect-garbage.js';

describe('collectGarbage', () => {
  it('frees an object held only weakly, even one created in the same job', async () => {
    const held = new WeakRef(new Float32Array(1 << 20));
    await collectGarbage();
    expect(held.deref()).toBeUndefined();
  });
});
