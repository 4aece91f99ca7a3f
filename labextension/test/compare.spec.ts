import { describe, expect, it } from 'vitest';
import { IRunRecord } from '../src/api';
import { TIME, bestRun, chartPoints, compareRuns, defaultGoal } from '../src/compare';

function run(id: string, at: string, parameters: Record<string, unknown>, metrics: Record<string, unknown>): IRunRecord {
  return { run_id: id, status: 'succeeded', created_at: at, parameters, metrics, stages: {} } as unknown as IRunRecord;
}

const runs = [
  run('c', '2026-12-07T10:02:00Z', { lr: 0.01, epochs: 3, opt: 'sgd' }, { accuracy: 0.91, loss: 0.3 }),
  run('a', '2026-12-07T10:00:00Z', { lr: 0.1, epochs: 3, opt: 'adam' }, { accuracy: 0.85, loss: 0.5, note: 'x' }),
  run('b', '2026-12-07T10:01:00Z', { lr: 0.001, epochs: 3, opt: 'sgd' }, { accuracy: 0.88, loss: 'nan' })
];

describe('compare runs', () => {
  it('lists runs oldest first, varying parameters first, numeric metrics only', () => {
    const c = compareRuns(runs);
    expect(c.rows.map(r => r.run_id)).toEqual(['a', 'b', 'c']);
    expect(c.parameters).toEqual(['lr', 'opt', 'epochs']);
    expect(c.metrics).toEqual(['accuracy', 'loss']);
    expect(c.rows[1].metrics).toEqual({ accuracy: 0.88 });
  });

  it('marks the best run per metric, higher or lower as the metric goes', () => {
    const { rows } = compareRuns(runs);
    expect(defaultGoal('accuracy')).toBe('max');
    expect(defaultGoal('val_loss')).toBe('min');
    expect(bestRun(rows, 'accuracy', 'max')).toBe('c');
    expect(bestRun(rows, 'accuracy', 'min')).toBe('a');
    expect(bestRun(rows, 'loss', 'min')).toBe('c');
    expect(bestRun(rows, 'f1', 'max')).toBeNull();
  });

  it('charts a metric over a numeric parameter, a category or time', () => {
    const { rows } = compareRuns(runs);
    expect(chartPoints(rows, 'accuracy', 'lr').map(p => [p.x, p.y])).toEqual([
      [0.001, 0.88],
      [0.01, 0.91],
      [0.1, 0.85]
    ]);
    expect(chartPoints(rows, 'accuracy', 'opt').map(p => p.label)).toEqual(['"adam"', '"sgd"', '"sgd"']);
    expect(chartPoints(rows, 'accuracy', TIME).map(p => p.run_id)).toEqual(['a', 'b', 'c']);
    expect(chartPoints(rows, 'loss', 'lr').map(p => p.run_id)).toEqual(['c', 'a']);
  });
});
