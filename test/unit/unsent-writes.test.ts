import { describe, expect, it } from 'vitest';
import { UnsentWrites } from '../../worker/transport/unsent-writes.js';

describe('UnsentWrites', () => {
  it('settles at once when nothing is unsent, and only after the last write otherwise', async () => {
    const unsent = new UnsentWrites();
    await unsent.settled();
    const first = unsent.add();
    const second = unsent.add();
    let settled = false;
    const waiting = unsent.settled().then(() => (settled = true));
    first();
    await Promise.resolve();
    expect(settled).toBe(false);
    expect(unsent.count).toBe(1);
    second();
    await waiting;
    expect(unsent.count).toBe(0);
  });
});
