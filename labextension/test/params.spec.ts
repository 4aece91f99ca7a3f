import { describe, expect, it } from 'vitest';
import { IParameter } from '../src/api';
import { parseSweepGrid, splitValues, variantCount } from '../src/params';

const P = (name: string, type: string, value: unknown): IParameter => ({ name, type, default: value, cell: 0 }) as IParameter;
const PARAMS = [
  P('learning_rate', 'float', 0.01),
  P('units', 'int', 32),
  P('activation', 'str', 'relu'),
  P('layers', 'list', [32]),
  P('shuffle', 'bool', true)
];

describe('sweep grid', () => {
  it('splits values at top-level commas only', () => {
    expect(splitValues('1, 2,3 ,')).toEqual(['1', '2', '3']);
    expect(splitValues('[1, 2], [3], {"a": [4, 5]}')).toEqual(['[1, 2]', '[3]', '{"a": [4, 5]}']);
    expect(splitValues('"a,b", \'c, d\', e')).toEqual(['"a,b"', "'c, d'", 'e']);
    expect(splitValues('   ')).toEqual([]);
  });

  it('parses each value as its parameter type; empty fields are not swept', () => {
    const grid = parseSweepGrid(PARAMS, {
      learning_rate: '0.1, 0.01,1e-3',
      units: '16,64',
      activation: 'relu, "tanh"',
      layers: '[16], [32, 32]',
      shuffle: ''
    });
    expect(grid).toEqual({
      learning_rate: [0.1, 0.01, 0.001],
      units: [16, 64],
      activation: ['relu', 'tanh'],
      layers: [[16], [32, 32]]
    });
    expect(variantCount(grid)).toBe(3 * 2 * 2 * 2);
  });

  it('says which value does not fit, and that something must be swept', () => {
    expect(() => parseSweepGrid(PARAMS, { units: '16, sixty-four' })).toThrow(
      "Parameter 'units' must be a int: 'sixty-four'"
    );
    expect(() => parseSweepGrid(PARAMS, { units: ' ' })).toThrow('at least one parameter');
  });
});
