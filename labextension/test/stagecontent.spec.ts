import { describe, expect, it } from 'vitest';
import { isShown, readableContent } from '../src/stagecontent';

const kind = (k: string, outputs: unknown[] = []) => ({ cell_type: 'code', metadata: { jupyter_pipeline: { kind: k } }, outputs });
const error = { output_type: 'error', ename: 'ValueError' };

describe('executed stage notebooks', () => {
  it("show the user's cells and the error, not the runner's plumbing or papermill's banners", () => {
    const nb = {
      cells: [
        { cell_type: 'markdown', metadata: { tags: ['papermill-error-cell-tag'] } },
        kind('header'),
        kind('parameters'),
        { cell_type: 'code', metadata: { tags: ['injected-parameters'] }, outputs: [], source: ['scale = 3\n', '_jp_run = {"store": "/srv"}\n'] },
        kind('context'),
        kind('setup'),
        kind('inputs'),
        kind('user'),
        kind('user', [error]),
        kind('outputs')
      ]
    };
    const { content, hidden, errorIndex } = readableContent(nb);
    expect((content.cells as any[]).map(c => c.metadata.jupyter_pipeline?.kind ?? c.metadata.tags[0])).toEqual([
      'header',
      'injected-parameters',
      'setup',
      'user',
      'user'
    ]);
    expect((content.cells as any[])[1].source).toBe('scale = 3\n'); // the run's values, not its context
    expect(hidden).toBe(5);
    expect(errorIndex).toBe(4);
    const bare = { cells: [{ metadata: { tags: ['injected-parameters'] }, source: '_jp_run = {}' }] };
    expect(readableContent(bare).hidden).toBe(1); // nothing left to show
  });

  it('show a plumbing cell when the error is in it (a value that did not load)', () => {
    expect(isShown(kind('inputs', [error]))).toBe(true);
    expect(isShown(kind('inputs'))).toBe(false);
    expect(isShown({ metadata: {} })).toBe(true); // a cell of no known kind: shown
  });
});
