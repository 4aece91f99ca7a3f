/**
 * The sidebar's state for the active notebook: its validated pipeline (re-validated, debounced,
 * as cells change) and its runs (polled while any runs).
 */
import { INotebookModel, NotebookPanel } from '@jupyterlab/notebook';
import { ICellModel } from '@jupyterlab/cells';
import { ISignal, Signal } from '@lumino/signaling';
import * as api from './api';
import { ExpandedRuns } from './uistate';
import { ICellLike, declaredStages } from './tags';

export interface IPipelineSettings {
  defaultTarget: api.Target;
  kfpHost: string;
  storeUrl: string;
  defaultImage: string;
  pollInterval: number;
  validationDelay: number;
}

export const DEFAULT_SETTINGS: IPipelineSettings = {
  defaultTarget: 'local',
  kfpHost: '',
  storeUrl: '',
  defaultImage: '',
  pollInterval: 2,
  validationDelay: 0.6
};

/** A notebook's cells as the tag helpers see them. */
export function cellsOf(model: INotebookModel | null | undefined): ICellLike[] {
  if (!model) {
    return [];
  }
  return Array.from({ length: model.cells.length }, (_, i) => {
    const cell = model.cells.get(i);
    return {
      cellType: cell.type,
      tags: cell.getMetadata('tags') as string[] | undefined,
      source: cell.sharedModel.getSource()
    };
  });
}

export class PipelineModel {
  settings: IPipelineSettings = { ...DEFAULT_SETTINGS };
  panel: NotebookPanel | null = null;
  pipeline: api.IPipeline | null = null;
  /** Why the last validation failed (network, server error), shown instead of the graph. */
  error: string | null = null;
  validating = false;
  /** False once the server said it cannot validate unsaved content: validate after save then. */
  liveValidation = true;
  /** True when the notebook changed since the pipeline shown was computed. */
  stale = false;
  runs: api.IRunRecord[] = [];
  runsError: string | null = null;
  /** Expanded runs: kept across notebook switches and page reloads (uistate.ts). */
  expanded: Set<string> = new ExpandedRuns();
  /** A run the Runs list should scroll to once it shows it (the one just published). */
  focusRun: string | null = null;
  serverConfig: api.IServerConfig = {};

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get path(): string | null {
    return this.panel?.context.path ?? null;
  }

  /** Cells as the tag helpers see them. */
  cells(): ICellLike[] {
    return cellsOf(this.panel?.model);
  }

  /** Stage names known now: from the server's answer and from the current tags. */
  stageNames(): string[] {
    const names = (this.pipeline?.stages ?? []).map(s => s.name);
    for (const n of declaredStages(this.cells())) {
      if (!names.includes(n)) {
        names.push(n);
      }
    }
    return names;
  }

  setPanel(panel: NotebookPanel | null): void {
    if (panel === this.panel) {
      return;
    }
    this._disconnect();
    this.panel = panel;
    this.pipeline = null;
    this.error = null;
    this.runs = [];
    if (panel) {
      void panel.context.ready.then(() => {
        if (this.panel !== panel || !panel.model) {
          return;
        }
        panel.model.contentChanged.connect(this._onContentChanged, this);
        panel.model.cells.changed.connect(this._onCellsChanged, this);
        panel.context.saveState.connect(this._onSaveState, this);
        this._connectCells();
        void this.validate();
        void this.refreshRuns();
      });
    }
    this._changed.emit();
  }

  /** Ask the server for the pipeline now (unsaved content when it can, else the saved file). */
  async validate(): Promise<void> {
    const panel = this.panel;
    if (!panel || !panel.model) {
      return;
    }
    const path = panel.context.path;
    const seq = ++this._validateSeq;
    this.validating = true;
    this._changed.emit();
    try {
      let result: api.IPipeline | null = null;
      if (this.liveValidation) {
        result = await api.validateContent(path, panel.model.toJSON());
        if (result === null) {
          this.liveValidation = false;
        }
      }
      if (result === null) {
        result = await api.getPipeline(path);
        this.stale = panel.model.dirty;
      } else {
        this.stale = false;
      }
      if (seq === this._validateSeq && this.panel === panel) {
        this.pipeline = result;
        this.error = null;
      }
    } catch (error) {
      if (seq === this._validateSeq && this.panel === panel) {
        this.error = (error as Error).message;
      }
    } finally {
      if (seq === this._validateSeq) {
        this.validating = false;
        this._changed.emit();
      }
    }
  }

  /** Debounced re-validation after an edit. */
  scheduleValidate(tagsChanged = true): void {
    if (this._timer !== null) {
      clearTimeout(this._timer);
    }
    this._timer = setTimeout(() => {
      this._timer = null;
      if (this.liveValidation) {
        void this.validate();
      } else {
        this.stale = true;
        this._changed.emit();
      }
    }, this.settings.validationDelay * 1000);
    if (tagsChanged) {
      // Chips and the stage editor read tags directly: tell them now, not after the debounce.
      this._changed.emit();
    }
  }

  async refreshRuns(): Promise<void> {
    const path = this.path;
    if (!path) {
      return;
    }
    try {
      const all = await api.listRuns(path);
      let runs = api.newestFirst(all.filter(r => api.runBelongsTo(r, path)));
      // Expanded runs that are still going: fetch their full, current record.
      runs = await Promise.all(
        runs.map(async r =>
          this.expanded.has(r.run_id) && (r.status === 'running' || !r.stages)
            ? await api.getRun(r.run_id).catch(() => r)
            : r
        )
      );
      if (this.path === path) {
        this.runs = runs;
        this.runsError = null;
      }
    } catch (error) {
      this.runsError = (error as Error).message;
    }
    this._changed.emit();
    this._schedulePoll();
  }

  async loadConfig(): Promise<void> {
    try {
      this.serverConfig = await api.getConfig();
    } catch {
      this.serverConfig = {};
    }
    this._changed.emit();
  }

  toggleRun(runId: string): void {
    if (this.expanded.has(runId)) {
      this.expanded.delete(runId);
    } else {
      this.expanded.add(runId);
    }
    this._changed.emit();
  }

  async cancel(runId: string): Promise<void> {
    await api.cancelRun(runId);
    await this.refreshRuns();
  }

  /** The run targets the server offers; only `local` until its config has loaded. */
  targets(): api.ITargetInfo[] {
    return (
      this.serverConfig.targets ?? [{ name: 'local', label: 'Local', needs_kfp_host: false, uses_image: false }]
    );
  }

  /** The KFP host to show: the user's setting, else the server's. */
  kfpHost(): string {
    return this.settings.kfpHost || String(this.serverConfig.kfp_host ?? '');
  }

  notify(): void {
    this._changed.emit();
  }

  dispose(): void {
    this._disconnect();
    if (this._poll !== null) {
      clearTimeout(this._poll);
    }
    Signal.clearData(this);
  }

  private _schedulePoll(): void {
    if (this._poll !== null) {
      clearTimeout(this._poll);
    }
    const running = this.runs.some(r => r.status === 'running');
    // Poll briskly while something runs; otherwise now and then (a run started from the CLI).
    const seconds = Math.max(0.5, this.settings.pollInterval) * (running ? 1 : 10);
    this._poll = setTimeout(() => {
      this._poll = null;
      void this.refreshRuns();
    }, seconds * 1000);
  }

  private _onContentChanged(): void {
    this.scheduleValidate(false);
  }

  private _onCellsChanged(): void {
    this._connectCells();
    this.scheduleValidate();
  }

  private _onCellMetadataChanged(): void {
    this.scheduleValidate();
  }

  private _onSaveState(_: unknown, state: string): void {
    if (state === 'completed' && (!this.liveValidation || this.stale)) {
      void this.validate();
    }
  }

  private _connectCells(): void {
    const model = this.panel?.model;
    if (!model) {
      return;
    }
    const now = new Set<ICellModel>();
    for (let i = 0; i < model.cells.length; i++) {
      now.add(model.cells.get(i));
    }
    for (const cell of now) {
      if (!this._cells.has(cell)) {
        cell.metadataChanged.connect(this._onCellMetadataChanged, this);
      }
    }
    for (const cell of this._cells) {
      if (!now.has(cell)) {
        cell.metadataChanged.disconnect(this._onCellMetadataChanged, this);
      }
    }
    this._cells = now;
  }

  private _disconnect(): void {
    const panel = this.panel;
    if (panel && panel.model) {
      panel.model.contentChanged.disconnect(this._onContentChanged, this);
      panel.model.cells.changed.disconnect(this._onCellsChanged, this);
      panel.context.saveState.disconnect(this._onSaveState, this);
    }
    for (const cell of this._cells) {
      cell.metadataChanged.disconnect(this._onCellMetadataChanged, this);
    }
    this._cells = new Set();
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
  }

  private _changed = new Signal<this, void>(this);
  private _cells = new Set<ICellModel>();
  private _timer: ReturnType<typeof setTimeout> | null = null;
  private _poll: ReturnType<typeof setTimeout> | null = null;
  private _validateSeq = 0;
}
