import { describe, expect, it } from 'vitest';
import { IRunRecord, IStageRecord } from '../src/api';
import { endedMessage } from '../src/notify';
import { IRunActions, canDebug, canResume, hasStageActions, preparingCells } from '../src/runactions';

function stage(status: string, started: string | null = '2026-12-07T10:00:00+00:00'): IStageRecord {
  return { status, started_at: started } as unknown as IStageRecord;
}

function run(status: string, stages: Record<string, IStageRecord> = {}): IRunRecord {
  return {
    run_id: 'r1',
    pipeline: 'flow',
    status,
    target: 'local',
    stages,
    created_at: '2026-12-07T10:00:00+00:00',
    finished_at: '2026-12-07T10:00:12.500000+00:00'
  } as unknown as IRunRecord;
}

const actions = (reuses: boolean): IRunActions => ({
  resume: () => undefined,
  debug: () => undefined,
  rerunFrom: () => undefined,
  canRerun: () => reuses
});

describe('run actions', () => {
  it('resume only runs that did not succeed and are not running', () => {
    expect(['failed', 'cancelled', 'interrupted'].map(s => canResume(run(s)))).toEqual([true, true, true]);
    expect(canResume(run('succeeded')) || canResume(run('running'))).toBe(false);
  });

  it('debug stages that started and ended', () => {
    expect(canDebug(stage('failed')) && canDebug(stage('succeeded')) && canDebug(stage('cancelled'))).toBe(true);
    expect(canDebug(stage('skipped', null)) || canDebug(stage('running')) || canDebug(stage('pending', null))).toBe(
      false
    );
  });

  it('re-run from a stage only on targets that reuse stages, not while running', () => {
    const skipped = stage('skipped', null);
    expect(hasStageActions(run('failed'), skipped, actions(true))).toBe(true);
    expect(hasStageActions(run('failed'), skipped, actions(false))).toBe(false);
    expect(hasStageActions(run('running'), skipped, actions(true))).toBe(false);
    expect(hasStageActions(run('failed'), stage('failed'), undefined)).toBe(false);
  });
});

describe('debug notebook', () => {
  it('runs the cells before the stage code on opening', () => {
    expect(preparingCells(['header', 'parameters', 'setup', 'inputs', 'user', 'user'])).toEqual([1, 2, 3]);
    expect(preparingCells(['header', 'parameters', 'user'])).toEqual([1]);
    expect(preparingCells(['header', 'user', 'parameters'])).toEqual([]);
  });
});

describe('notifications', () => {
  it('say the status, the duration, the failed stage and the run', () => {
    const failed = run('failed', { make: stage('succeeded'), use: stage('failed') });
    expect(endedMessage(failed)).toBe('Pipeline flow failed in 12.5 s: stage use failed (run r1)');
    expect(endedMessage(run('succeeded'))).toBe('Pipeline flow succeeded in 12.5 s (run r1)');
  });
});
