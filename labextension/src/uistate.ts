/**
 * UI state that survives a page reload and a switch between notebooks: which runs are expanded in
 * the Runs list (the graph's live status follows the first expanded run). Kept in the browser's
 * localStorage; without one (tests, a locked-down browser) it lasts as long as the page.
 */

/** The part of `Storage` used here. */
export interface IKeyValueStore {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

function browserStorage(): IKeyValueStore | null {
  try {
    return typeof localStorage === 'undefined' ? null : localStorage;
  } catch {
    return null; // access denied (privacy settings)
  }
}

/** A set of run ids, saved on every change; the most recent `limit` are kept. */
export class ExpandedRuns extends Set<string> {
  constructor(
    storage: IKeyValueStore | null = browserStorage(),
    key = 'jupyter-pipeline:expanded-runs',
    limit = 100
  ) {
    super();
    this._storage = storage;
    this._key = key;
    this._limit = limit;
    try {
      const saved = JSON.parse(storage?.getItem(key) ?? '[]');
      for (const id of Array.isArray(saved) ? saved : []) {
        if (typeof id === 'string') {
          super.add(id);
        }
      }
    } catch {
      // a value another version wrote: start empty
    }
  }

  add(id: string): this {
    super.delete(id); // most recent last
    super.add(id);
    this._save();
    return this;
  }

  delete(id: string): boolean {
    const had = super.delete(id);
    this._save();
    return had;
  }

  clear(): void {
    super.clear();
    this._save();
  }

  private _save(): void {
    // Set's constructor may call add before the fields are set.
    if (!this._key) {
      return;
    }
    try {
      this._storage?.setItem(this._key, JSON.stringify([...this].slice(-this._limit)));
    } catch {
      // full or denied: the page keeps its state anyway
    }
  }

  private _storage: IKeyValueStore | null = null;
  private _key = '';
  private _limit = 100;
}
