import { describe, expect, it } from 'vitest';
import {
  cellStates,
  declaredStages,
  emptySpec,
  isMagicOnly,
  isValidStageName,
  magicStage,
  readCellSpec,
  specErrors,
  stageColor,
  stageOfCells,
  writeCellSpec
} from '../src/tags';

describe('readCellSpec', () => {
  it('reads the native dialect', () => {
    const spec = readCellSpec(['stage:train', 'after:load', 'after:prep', 'gpu:2:nvidia-tesla-t4', 'image:py:3.11']);
    expect(spec).toEqual({
      ...emptySpec(),
      role: 'stage',
      stage: 'train',
      after: ['load', 'prep'],
      gpu: 2,
      gpuType: 'nvidia-tesla-t4',
      image: 'py:3.11'
    });
  });

  it('reads resources, retries, timeout, cache and further options', () => {
    const spec = readCellSpec([
      'stage:t',
      'cpu:500m',
      'memory:8Gi',
      'retries:2',
      'timeout:600',
      'cache:off',
      'env:A=1',
      'volume:data:/data',
      'hide-input'
    ]);
    expect(spec).toMatchObject({ cpu: '500m', memory: '8Gi', retries: 2, timeout: 600, cache: false });
    expect(spec.more).toEqual(['env:A=1', 'volume:data:/data']);
    expect(readCellSpec(['stage:t', 'cache:disabled']).cache).toBe(false);
    expect(readCellSpec(['stage:t']).cache).toBe(true);
  });

  it('reads Kale spellings', () => {
    expect(readCellSpec(['block:load', 'prev:x', 'limit:nvidia.com/gpu:1'])).toMatchObject({
      role: 'stage',
      stage: 'load',
      after: ['x'],
      gpu: 1
    });
    expect(readCellSpec(['imports']).role).toBe('setup');
    expect(readCellSpec(['functions']).role).toBe('setup');
    expect(readCellSpec(['pipeline-parameters']).role).toBe('parameters');
    expect(readCellSpec(['step:a']).stage).toBe('a');
  });

  it('reads an empty Kale block: as "continue the stage above"', () => {
    expect(readCellSpec(['block:'])).toEqual(emptySpec());
    const cells = [
      { cellType: 'code', tags: ['block:load'] },
      { cellType: 'code', tags: ['block:'] },
      { cellType: 'code', tags: ['step:'] }
    ];
    expect(stageOfCells(cells)).toEqual(['load', 'load', 'load']);
  });

  it('ignores foreign tags and tolerates missing tags', () => {
    expect(readCellSpec(undefined)).toEqual(emptySpec());
    expect(readCellSpec(['hide-input', 'gpu:lots', 'retries:many'])).toEqual(emptySpec());
  });
});

describe('writeCellSpec', () => {
  it('replaces owned tags and keeps foreign ones in order', () => {
    const tags = ['hide-input', 'stage:old', 'prev:z', 'cpu:2', 'gpu:1', 'retries:3', 'env:A=1', 'other:x'];
    const out = writeCellSpec(tags, { ...emptySpec(), role: 'stage', stage: 'train', after: ['load'], gpu: 1 });
    expect(out).toEqual(['stage:train', 'after:load', 'gpu:1', 'hide-input', 'other:x']);
  });

  it('keeps the accelerator type and drops zero GPUs', () => {
    const spec = readCellSpec(['stage:t', 'gpu:1:nvidia-l4']);
    expect(writeCellSpec(['stage:t', 'gpu:1:nvidia-l4'], { ...spec, gpu: 2 })).toEqual([
      'stage:t',
      'gpu:2:nvidia-l4'
    ]);
    expect(writeCellSpec(['stage:t', 'gpu:1'], { ...spec, gpu: 0 })).toEqual(['stage:t']);
  });

  it('writes roles alone and clears stage tags', () => {
    for (const role of ['setup', 'parameters', 'skip'] as const) {
      expect(writeCellSpec(['stage:a', 'after:b', 'x'], { ...emptySpec(), role })).toEqual([role, 'x']);
    }
    expect(writeCellSpec(['stage:a', 'skip', 'x'], emptySpec())).toEqual(['x']);
  });

  it('never writes a self-dependency or duplicates', () => {
    expect(
      writeCellSpec([], { ...emptySpec(), role: 'stage', stage: 'a', after: ['a', 'b', 'b'] })
    ).toEqual(['stage:a', 'after:b']);
  });

  it('round-trips through readCellSpec', () => {
    const spec = {
      ...emptySpec(),
      role: 'stage' as const,
      stage: 'ev',
      after: ['tr'],
      gpu: 3,
      image: 'img:1',
      cpu: '2',
      memory: '1Gi',
      retries: 1,
      timeout: 30,
      cache: false,
      workers: 4,
      more: ['env:X=1', 'shm:1Gi']
    };
    const tags = writeCellSpec(['keep'], spec);
    expect(tags).toEqual([
      'stage:ev',
      'after:tr',
      'gpu:3',
      'image:img:1',
      'cpu:2',
      'memory:1Gi',
      'retries:1',
      'timeout:30',
      'workers:4',
      'cache:off',
      'env:X=1',
      'shm:1Gi',
      'keep'
    ]);
    expect(readCellSpec(tags)).toEqual(spec);
  });
});

describe('workers', () => {
  const stage = { ...emptySpec(), role: 'stage' as const, stage: 'train' };

  it('reads workers:N as the converter does, and anything it refuses as one process', () => {
    expect(emptySpec().workers).toBe(1);
    expect(readCellSpec(['stage:train', 'workers:2']).workers).toBe(2);
    expect(readCellSpec(['stage:train', 'workers:08']).workers).toBe(8);
    for (const bad of ['workers:1', 'workers:0', 'workers:two', 'workers:-3', 'workers:']) {
      expect(readCellSpec(['stage:train', bad]).workers).toBe(1);
    }
    // a field of the form, not a free-form tag under "more"
    expect(readCellSpec(['stage:train', 'workers:3']).more).toEqual([]);
  });

  it('writes workers:N only for two or more, and drops the tag for one', () => {
    expect(writeCellSpec(['x'], { ...stage, workers: 2, gpu: 1 })).toEqual(['stage:train', 'gpu:1', 'workers:2', 'x']);
    expect(writeCellSpec(['stage:train', 'workers:3', 'x'], { ...stage, workers: 1 })).toEqual(['stage:train', 'x']);
    expect(writeCellSpec(['stage:train', 'workers:1'], readCellSpec(['stage:train', 'workers:1']))).toEqual([
      'stage:train'
    ]);
    expect(writeCellSpec(['workers:2'], { ...emptySpec(), role: 'setup', workers: 2 })).toEqual(['setup']);
  });

  it('keeps map: beside workers: for the server to report, as it does other options', () => {
    const spec = readCellSpec(['stage:train', 'workers:2', 'map:items']);
    expect(spec).toMatchObject({ workers: 2, more: ['map:items'] });
    expect(specErrors(spec)).toEqual({});
    expect(writeCellSpec([], spec)).toEqual(['stage:train', 'workers:2', 'map:items']);
  });

  it('is not accepted as a free-form tag', () => {
    expect(specErrors({ ...stage, more: ['workers:2'] }).more).toMatch(/'workers:2'/);
  });
});

describe('stages of cells', () => {
  const cells = [
    { cellType: 'code', tags: ['setup'] },
    { cellType: 'code', tags: ['parameters'] },
    { cellType: 'markdown', tags: [] },
    { cellType: 'code', tags: ['stage:load'] },
    { cellType: 'code', tags: undefined },
    { cellType: 'code', tags: ['skip'] },
    { cellType: 'code', tags: [], source: '%%stage train --gpu 1\nfit()' },
    { cellType: 'code', tags: ['stage:load'] }
  ];

  it('follows the continuation rule', () => {
    expect(stageOfCells(cells)).toEqual([null, null, null, 'load', 'load', null, 'train', 'load']);
    expect(declaredStages(cells)).toEqual(['load', 'train']);
  });

  it('says what each cell is, magic-only cells left out', () => {
    const states = cellStates([
      { cellType: 'code', tags: [], source: 'x = 1' },
      { cellType: 'code', tags: [], source: '%load_ext jupyter_pipeline' },
      ...cells,
      { cellType: 'code', tags: [], source: '# publish it\n%pipeline publish --experiment e\n\n%pipeline status' },
      { cellType: 'code', tags: [], source: '%pipeline status\nprint(1)' }
    ]);
    expect(states.map(s => s.kind)).toEqual([
      'outside',
      'magics',
      'setup',
      'parameters',
      'other',
      'start',
      'continue',
      'skip',
      'start',
      'start',
      'magics',
      'continue'
    ]);
    expect(states[8]).toEqual({ kind: 'start', stage: 'train', magic: true });
    expect(states[10].stage).toBeNull();
    expect(isMagicOnly('%reload_ext jupyter_pipeline')).toBe(true);
    expect(isMagicOnly('%load_ext autoreload')).toBe(false);
    expect(isMagicOnly('')).toBe(false);
  });

  it('reads the %%stage magic line', () => {
    expect(magicStage('%%stage prep --after load\nx = 1')).toBe('prep');
    expect(magicStage('x = 1\n%%stage prep')).toBeNull();
  });
});

describe('notebook: cells', () => {
  it('shows what a reference includes and does not continue the stage above through it', () => {
    const code = (tags: string[], source = 'x = 1') => ({ cellType: 'code', tags, source });
    const states = cellStates([
      code(['stage:prepare']),
      code(['notebook:parts/child.ipynb'], '# the child runs here'),
      code([]),
      code(['stage:report'])
    ]);
    expect(states.map(s => s.kind)).toEqual(['start', 'include', 'outside', 'start']);
    expect(states[1].include).toBe('parts/child.ipynb');
    expect(states[2].stage).toBeNull();
  });
});

describe('names and colours', () => {
  it('validates stage names like the converter', () => {
    expect(isValidStageName('train_2-b')).toBe(true);
    expect(isValidStageName('Train')).toBe(false);
    expect(isValidStageName('2x')).toBe(false);
    expect(isValidStageName('a'.repeat(64))).toBe(false);
  });

  it('gives a stable colour per stage', () => {
    expect(stageColor('train')).toBe(stageColor('train'));
    expect(stageColor('train')).not.toBe(stageColor('load'));
  });
});

describe('specErrors', () => {
  const stage = { ...emptySpec(), role: 'stage' as const, stage: 'train' };
  it('accepts a valid stage and ignores non-stage roles', () => {
    expect(specErrors(stage)).toEqual({});
    expect(specErrors({ ...emptySpec(), role: 'setup' })).toEqual({});
  });
  it('names each bad field', () => {
    expect(Object.keys(specErrors({ ...stage, stage: null }))).toEqual(['stage']);
    expect(specErrors({ ...stage, stage: 'Train' }).stage).toMatch(/Lowercase/);
    expect(Object.keys(specErrors({ ...stage, cpu: 'two', memory: '8GB' }))).toEqual(['cpu', 'memory']);
    expect(specErrors({ ...stage, more: ['env:A=1', 'hide-input'] }).more).toMatch(/'hide-input'/);
  });
});

describe('conditions (if:)', () => {
  const stage = { ...emptySpec(), role: 'stage' as const, stage: 'register' };

  it('reads if:EXPR into the form field, several tags joined as the converter joins them', () => {
    expect(emptySpec().condition).toBeNull();
    expect(readCellSpec(['stage:register', 'if:accuracy >= min_accuracy']).condition).toBe('accuracy >= min_accuracy');
    expect(readCellSpec(['stage:r', 'if:a > 1', 'if:not b']).condition).toBe('(a > 1) and (not b)');
    expect(readCellSpec(['stage:r', 'if:a > 1']).more).toEqual([]);
  });

  it('writes if:EXPR after the other fields, and drops it when the field is emptied', () => {
    const tags = writeCellSpec(['x'], { ...stage, cache: false, condition: 'mode == "full"' });
    expect(tags).toEqual(['stage:register', 'cache:off', 'if:mode == "full"', 'x']);
    expect(readCellSpec(tags).condition).toBe('mode == "full"');
    expect(writeCellSpec(['stage:register', 'if:a > 1', 'x'], { ...stage, condition: null })).toEqual([
      'stage:register',
      'x'
    ]);
  });

  it('refuses a comma, which nbformat does not allow in a tag', () => {
    expect(specErrors({ ...stage, condition: 'a > 1' }).condition).toBeUndefined();
    expect(specErrors({ ...stage, condition: 'a in (1, 2)' }).condition).toMatch(/no commas/);
  });
});
