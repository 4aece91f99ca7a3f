import { describe, expect, it } from 'vitest';
import { errorClass, modelLabel, withCell } from '../src/runs';

describe('stage errors', () => {
  it('name the 1-based cell once', () => {
    expect(withCell('ValueError: boom', 2)).toBe('ValueError: boom (cell 2)');
    expect(withCell("Variable 'x' in stage 'a' (cell 3) cannot be passed", 3)).toBe(
      "Variable 'x' in stage 'a' (cell 3) cannot be passed"
    );
    expect(withCell('killed', null)).toBe('killed');
  });
});

describe('stage notes', () => {
  it('are red only for a failed stage', () => {
    expect(errorClass('failed')).toBe('jp-pipeline-error');
    expect(errorClass('skipped')).not.toContain('error');
    expect(errorClass('cancelled')).not.toContain('error');
  });
});

describe('stage models', () => {
  it('name a registered version with its format and a promotion with its alias', () => {
    expect(modelLabel({ name: 'iris', version: 3, format: 'sklearn', uri: 's3://b/models/iris/3/' })).toBe(
      'iris v3 (sklearn)'
    );
    expect(modelLabel({ name: 'iris', version: 3, alias: 'production' })).toBe('iris v3 → production');
  });
});
