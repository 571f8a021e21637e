// Coordinator discovery: every precedence rule (flag > RINGTRAIN_COORDINATOR > MASTER_ADDR+PORT,
// RANK > JOB_COMPLETION_INDEX) and every kind of malformed input, checked for the variable it names.
import { describe, expect, it } from 'vitest';
import { resolveCoordinatorTarget } from '../../shared/coordinator-address.js';
import { JobConfigError } from '../../shared/errors.js';

/** The JobConfigError `fn` throws (fails the test if it throws anything else or nothing). */
function configError(fn: () => unknown): JobConfigError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(JobConfigError);
    return error as JobConfigError;
  }
  throw new Error('expected a JobConfigError, got no error');
}

describe('coordinator address precedence', () => {
  const all = { RINGTRAIN_COORDINATOR: 'from-env:7001', MASTER_ADDR: 'master', MASTER_PORT: '7002' };

  it('prefers the --coordinator flag over every variable', () => {
    expect(resolveCoordinatorTarget('flag-host:7000', all)).toEqual({
      address: 'flag-host:7000',
      source: '--coordinator',
    });
  });

  it('uses RINGTRAIN_COORDINATOR over MASTER_ADDR+MASTER_PORT when there is no flag', () => {
    expect(resolveCoordinatorTarget(undefined, all)).toEqual({
      address: 'from-env:7001',
      source: 'RINGTRAIN_COORDINATOR',
    });
  });

  it('falls back to the PyTorchJob pair', () => {
    expect(resolveCoordinatorTarget(undefined, { MASTER_ADDR: 'master', MASTER_PORT: '7002' })).toEqual({
      address: 'master:7002',
      source: 'MASTER_ADDR+MASTER_PORT',
    });
  });

  it('treats empty variables as unset', () => {
    const env = { RINGTRAIN_COORDINATOR: ' ', MASTER_ADDR: 'master', MASTER_PORT: '7002', RANK: '' };
    expect(resolveCoordinatorTarget(undefined, env)).toEqual({
      address: 'master:7002',
      source: 'MASTER_ADDR+MASTER_PORT',
    });
  });

  it('does not read a malformed lower-precedence variable when a higher one is set', () => {
    expect(resolveCoordinatorTarget('ok:1', { RINGTRAIN_COORDINATOR: 'bad', MASTER_PORT: 'x' }).address).toBe('ok:1');
  });

  it('asks for an address when none is given', () => {
    const error = configError(() => resolveCoordinatorTarget(undefined, {}));
    expect(error.source).toBe('--coordinator');
    expect(error.message).toContain('RINGTRAIN_COORDINATOR');
  });

  it.each([
    [{ MASTER_ADDR: 'master' }, 'MASTER_PORT'],
    [{ MASTER_PORT: '7002' }, 'MASTER_ADDR'],
  ])('names the missing half of the MASTER pair in %j', (env, missing) => {
    expect(configError(() => resolveCoordinatorTarget(undefined, env)).source).toBe(missing);
  });
});

describe('host:port forms', () => {
  it.each([
    ['10.0.0.5:7070', '10.0.0.5:7070'],
    ['ringtrain-coordinator:7070', 'ringtrain-coordinator:7070'],
    ['ringtrain-coordinator.default.svc.cluster.local.:7070', 'ringtrain-coordinator.default.svc.cluster.local.:7070'],
    ['[::1]:7070', '[::1]:7070'],
    ['[fd00::5]:65535', '[fd00::5]:65535'],
    ['  coordinator:1  ', 'coordinator:1'],
  ])('accepts %s', (text, address) => {
    expect(resolveCoordinatorTarget(text, {}).address).toBe(address);
  });

  it.each([
    ['fd00::5', '[fd00::5]'],
    ['[fd00::5]', '[fd00::5]'],
    ['10.1.2.3', '10.1.2.3'],
  ])('brackets an IPv6 MASTER_ADDR (%s)', (masterAddr, host) => {
    expect(resolveCoordinatorTarget(undefined, { MASTER_ADDR: masterAddr, MASTER_PORT: '29500' }).address).toBe(
      `${host}:29500`,
    );
  });

  it.each([
    ['coordinator', 'port is missing'],
    ['coordinator:', 'port ""'],
    ['coordinator:0', 'port "0"'],
    ['coordinator:65536', 'port "65536"'],
    ['coordinator:70a', 'port "70a"'],
    ['coordinator:-1', 'port "-1"'],
    [':7070', 'not a valid host name'],
    ['bad_host:7070', 'not a valid host name'],
    ['-lead.example:7070', 'not a valid host name'],
    [`${'a'.repeat(64)}:7070`, 'not a valid host name'],
    ['256.1.1.1:7070', 'not an IPv4 address'],
    ['::1:7070', 'brackets'],
    ['[::g]:7070', 'not an IPv6 address'],
    ['http://coordinator:7070', 'scheme'],
    ['', 'port is missing'],
  ])('rejects --coordinator %j, naming the flag', (text, why) => {
    const error = configError(() => resolveCoordinatorTarget(text, {}));
    expect(error.source).toBe('--coordinator');
    expect(error.message).toContain(why);
  });

  it('names RINGTRAIN_COORDINATOR when it is malformed', () => {
    const error = configError(() => resolveCoordinatorTarget(undefined, { RINGTRAIN_COORDINATOR: 'host:port' }));
    expect(error.source).toBe('RINGTRAIN_COORDINATOR');
    expect(error.message).toMatch(/^RINGTRAIN_COORDINATOR: port "port"/);
  });

  it.each([
    [{ MASTER_ADDR: 'bad host', MASTER_PORT: '1' }, 'MASTER_ADDR'],
    [{ MASTER_ADDR: '999.0.0.1', MASTER_PORT: '1' }, 'MASTER_ADDR'],
    [{ MASTER_ADDR: 'master', MASTER_PORT: '99999' }, 'MASTER_PORT'],
    [{ MASTER_ADDR: 'master', MASTER_PORT: 'http' }, 'MASTER_PORT'],
  ])('names the malformed variable in %j', (env, variable) => {
    expect(configError(() => resolveCoordinatorTarget(undefined, env)).source).toBe(variable);
  });
});

describe('rank and world size hints', () => {
  it('takes RANK over JOB_COMPLETION_INDEX, and WORLD_SIZE as given', () => {
    const env = { RANK: '2', JOB_COMPLETION_INDEX: '1', WORLD_SIZE: '4' };
    expect(resolveCoordinatorTarget('c:1', env)).toEqual({
      address: 'c:1',
      source: '--coordinator',
      rankHint: 2,
      worldSizeHint: 4,
    });
  });

  it('uses JOB_COMPLETION_INDEX when RANK is absent', () => {
    const target = resolveCoordinatorTarget(undefined, { RINGTRAIN_COORDINATOR: 'c:1', JOB_COMPLETION_INDEX: '0' });
    expect(target.rankHint).toBe(0);
    expect(target).not.toHaveProperty('worldSizeHint');
  });

  it('leaves both hints out when nothing sets them', () => {
    expect(Object.keys(resolveCoordinatorTarget('c:1', {})).sort()).toEqual(['address', 'source']);
  });

  it.each([
    [{ RANK: '-1' }, 'RANK'],
    [{ RANK: '1.5' }, 'RANK'],
    [{ RANK: 'two' }, 'RANK'],
    [{ JOB_COMPLETION_INDEX: 'x' }, 'JOB_COMPLETION_INDEX'],
    [{ WORLD_SIZE: '0' }, 'WORLD_SIZE'],
    [{ WORLD_SIZE: '3e2' }, 'WORLD_SIZE'],
    [{ RANK: '3', WORLD_SIZE: '3' }, 'RANK'],
    [{ JOB_COMPLETION_INDEX: '5', WORLD_SIZE: '2' }, 'JOB_COMPLETION_INDEX'],
  ])('rejects %j, naming the variable', (env, variable) => {
    expect(configError(() => resolveCoordinatorTarget('c:1', env)).source).toBe(variable);
  });
});
