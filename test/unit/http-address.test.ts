import { describe, expect, it } from 'vitest';
import { formatHostPort, parseHttpAddress } from '../../shared/http-address.js';
import { jobSchema } from '../../shared/job-schema.js';

describe('parseHttpAddress', () => {
  it('binds a bare port to loopback and takes an address when given', () => {
    expect(parseHttpAddress('9464')).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(parseHttpAddress(0)).toEqual({ host: '127.0.0.1', port: 0 });
    expect(parseHttpAddress('0.0.0.0:9464')).toEqual({ host: '0.0.0.0', port: 9464 });
    expect(parseHttpAddress('[::1]:80')).toEqual({ host: '::1', port: 80 });
    expect(formatHostPort({ host: '::1', port: 80 })).toBe('[::1]:80');
  });

  it('refuses what is not a port or ADDR:PORT', () => {
    for (const bad of ['', 'abc', '70000', 'host:', ':80', '1.2.3.4:99999', '-1'])
      expect(parseHttpAddress(bad)).toBeUndefined();
  });

  it("is the job file's http: (a port or ADDR:PORT)", () => {
    expect(jobSchema.shape.http.safeParse(9464).success).toBe(true);
    expect(jobSchema.shape.http.safeParse('0.0.0.0:9464').success).toBe(true);
    expect(jobSchema.shape.http.safeParse('nope').success).toBe(false);
    expect(jobSchema.shape.http.safeParse(65536).success).toBe(false);
  });
});
