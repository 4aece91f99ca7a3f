import { describe, expect, it } from 'vitest';
import { ExpandedRuns, IKeyValueStore } from '../src/uistate';

function memory(): IKeyValueStore & { data: Record<string, string> } {
  const data: Record<string, string> = {};
  return { data, getItem: k => data[k] ?? null, setItem: (k, v) => void (data[k] = v) };
}

describe('expanded runs', () => {
  it('survive a reload (a new set on the same storage)', () => {
    const storage = memory();
    const before = new ExpandedRuns(storage);
    before.add('a');
    before.add('b');
    before.delete('a');
    expect([...new ExpandedRuns(storage)]).toEqual(['b']);
  });

  it('keep the most recent, and start empty on a value they cannot read', () => {
    const storage = memory();
    const runs = new ExpandedRuns(storage, 'k', 2);
    ['a', 'b', 'c', 'a'].forEach(id => runs.add(id));
    expect([...new ExpandedRuns(storage, 'k', 2)]).toEqual(['c', 'a']);
    storage.setItem('k', '{not json');
    expect([...new ExpandedRuns(storage, 'k')]).toEqual([]);
    expect([...new ExpandedRuns(null)]).toEqual([]);
  });
});
