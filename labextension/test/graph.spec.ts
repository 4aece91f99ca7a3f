import { describe, expect, it } from 'vitest';
import { layoutPipeline } from '../src/graph';
import { parameterText, parseParameter } from '../src/params';

const stage = (name: string, gpu = 0, condition: string | null = null) => ({
  name,
  condition,
  cells: [],
  after: [],
  depends_on: [],
  inputs: [],
  outputs: [],
  parameters: [],
  gpu,
  options: { gpu, gpu_type: null, cpu: null, memory: null, image: null, retries: 0, timeout: null, cache: true }
});

describe('layoutPipeline', () => {
  it('places downstream stages below upstream ones', () => {
    const layout = layoutPipeline({
      name: 'p',
      stages: [stage('load'), stage('train', 1), stage('evaluate')],
      edges: [
        ['load', 'train'],
        ['train', 'evaluate'],
        ['load', 'evaluate']
      ],
      parameters: [],
      problems: []
    });
    const y = Object.fromEntries(layout.nodes.map(n => [n.name, n.y]));
    expect(y.load).toBeLessThan(y.train);
    expect(y.train).toBeLessThan(y.evaluate);
    expect(layout.edges).toHaveLength(3);
    expect(layout.nodes.find(n => n.name === 'train')?.gpu).toBe(1);
  });

  it('lays out a cycle and marks its stages', () => {
    const layout = layoutPipeline({
      name: 'p',
      stages: [stage('a'), stage('b')],
      edges: [
        ['a', 'b'],
        ['b', 'a']
      ],
      parameters: [],
      problems: [{ severity: 'error', code: 'cycle', message: 'cycle a -> b -> a', stage: 'a', cell: 3, line: null }]
    });
    expect(layout.nodes).toHaveLength(2);
    expect(layout.nodes.find(n => n.name === 'a')?.inCycle).toBe(true);
  });
});

describe('layoutPipeline with included notebooks', () => {
  it('frames each notebook around its stages and marks the edges between notebooks', () => {
    const inNotebook = (name: string, notebook: string) => ({ ...stage(name), notebook });
    const layout = layoutPipeline({
      name: 'parent',
      stages: [inNotebook('prepare', ''), inNotebook('compute', 'parts/child.ipynb'), inNotebook('report', '')],
      edges: [
        ['prepare', 'compute'],
        ['compute', 'report']
      ],
      parameters: [],
      problems: [],
      notebooks: [{ path: 'parts/child.ipynb', parent: '', cell: 3, depth: 1, prefix: 'child', spelling: 'native' }]
    });
    expect(layout.nodes.map(n => n.name).sort()).toEqual(['compute', 'prepare', 'report']);
    expect(layout.groups.map(g => g.notebook).sort()).toEqual(['', 'parts/child.ipynb']);
    const child = layout.groups.find(g => g.notebook === 'parts/child.ipynb')!;
    const compute = layout.nodes.find(n => n.name === 'compute')!;
    expect(Math.abs(compute.x - child.x)).toBeLessThanOrEqual(child.width / 2);
    expect(Math.abs(compute.y - child.y)).toBeLessThanOrEqual(child.height / 2);
    expect(layout.edges.every(e => e.crosses)).toBe(true);
  });

  it('draws no frames for a single notebook', () => {
    const layout = layoutPipeline({ name: 'p', stages: [stage('a')], edges: [], parameters: [], problems: [] });
    expect(layout.groups).toEqual([]);
  });
});

describe('publish dialog values', () => {
  const p = (type: string, d: unknown) => ({ name: 'x', type, default: d, cell: 0 });
  it('round-trips parameter defaults through their text', () => {
    for (const [type, value] of [
      ['int', 5],
      ['float', 0.01],
      ['bool', true],
      ['str', 'adam'],
      ['list', [1, 2]],
      ['dict', { a: 1 }]
    ] as const) {
      expect(parseParameter(p(type, value), parameterText(p(type, value)))).toEqual(value);
    }
  });
  it('rejects text of the wrong type', () => {
    expect(() => parseParameter(p('int', 1), '1.5')).toThrow(/int/);
    expect(() => parseParameter(p('float', 1), 'abc')).toThrow(/float/);
    expect(() => parseParameter(p('bool', true), 'yes')).toThrow(/bool/);
  });
});

describe('conditional stages in the graph', () => {
  it('marks a conditional stage and makes room for its badge', () => {
    const layout = layoutPipeline({
      name: 'p',
      stages: [stage('evaluate'), stage('register', 0, 'accuracy >= min_accuracy')],
      edges: [['evaluate', 'register']],
      parameters: [],
      problems: []
    });
    const byName = Object.fromEntries(layout.nodes.map(n => [n.name, n]));
    expect(byName.register.condition).toBe('accuracy >= min_accuracy');
    expect(byName.evaluate.condition).toBeNull();
    expect(byName.register.width).toBeGreaterThan('register'.length * 7.5 + 24);
  });
});
