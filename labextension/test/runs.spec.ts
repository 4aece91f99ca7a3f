import { describe, expect, it } from 'vitest';
import { errorClass, withCell } from '../src/runs';

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
