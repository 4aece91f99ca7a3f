/**
 * The stage bar on each code cell: the cell's stage chip (or role), an "Add stage" button on
 * hover, and, when opened, the stage form on the cell itself. Computed from the tags, no server
 * round trip.
 */
import { Cell } from '@jupyterlab/cells';
import { NotebookPanel } from '@jupyterlab/notebook';
import { ReactWidget } from '@jupyterlab/apputils';
import { IDisposable } from '@lumino/disposable';
import { PanelLayout } from '@lumino/widgets';
import * as React from 'react';
import { StageForm } from './editor';
import { cellsOf } from './model';
import { ICellLike, ICellSpec, ICellState, cellStates, declaredStages, readCellSpec, stageColor, writeCellSpec } from './tags';

const BAR_CLASS = 'jp-pipeline-cellbar';
const STAGE_CELL_CLASS = 'jp-pipeline-stage-cell';

/** How a stage bar's form opens: editing what the tags say, or making the cell a new stage. */
export type OpenMode = 'edit' | 'new';

interface IBarProps {
  index: number;
  state: ICellState;
  tags: string[];
  stages: string[];
  defaultImage: string;
  open: OpenMode | null;
  onOpen: (mode: OpenMode) => void;
  onClose: () => void;
  onApply: (spec: ICellSpec) => void;
}

/** "after load · 2 workers · 1 GPU · 8Gi": what the stage's tags set, in a few words. */
export function stageSummary(spec: ICellSpec): string {
  const parts: string[] = [];
  if (spec.after.length) {
    parts.push(`after ${spec.after.join(', ')}`);
  }
  if (spec.workers > 1) {
    parts.push(`${spec.workers} workers`);
  }
  if (spec.condition) {
    parts.push(`if ${spec.condition}`);
  }
  if (spec.gpu) {
    parts.push(`${spec.gpu} GPU${spec.gpuType ? ` (${spec.gpuType})` : ''}`);
  }
  if (spec.cpu) {
    parts.push(`${spec.cpu} CPU`);
  }
  if (spec.memory) {
    parts.push(spec.memory);
  }
  if (spec.image) {
    parts.push(spec.image);
  }
  if (spec.retries) {
    parts.push(`${spec.retries} ${spec.retries === 1 ? 'retry' : 'retries'}`);
  }
  if (spec.timeout) {
    parts.push(`timeout ${spec.timeout} s`);
  }
  if (!spec.cache) {
    parts.push('no cache');
  }
  if (spec.more.length) {
    parts.push(spec.more.join(' '));
  }
  return parts.join(' · ');
}

const ROLE_TEXT: Record<string, string> = {
  setup: 'setup · runs in every stage',
  parameters: 'parameters',
  skip: 'skip · not in the pipeline',
  magics: 'pipeline magics · not in the pipeline'
};

function Bar(props: IBarProps): JSX.Element {
  const { state, open } = props;
  const spec = readCellSpec(props.tags);
  const label = `cell ${props.index + 1}`;
  const toggle = (mode: OpenMode) => (open ? props.onClose() : props.onOpen(mode));
  let chip: JSX.Element | null = null;
  if (state.kind === 'start' && state.stage) {
    chip = (
      <>
        <button
          className="jp-pipeline-chip jp-pipeline-cell-chip"
          data-stage={state.stage}
          style={{ '--jp-pipeline-chip-color': stageColor(state.stage) } as React.CSSProperties}
          aria-expanded={!!open}
          title={state.magic ? `Stage ${state.stage} (set by the %%stage line)` : `Edit stage ${state.stage}`}
          onClick={() => toggle('edit')}
        >
          {state.stage}
        </button>
        <span className="jp-pipeline-cellbar-summary">{stageSummary(spec)}</span>
      </>
    );
  } else if (state.kind === 'continue' && state.stage) {
    chip = (
      <button
        className="jp-pipeline-cellbar-continue"
        data-stage={state.stage}
        style={{ '--jp-pipeline-chip-color': stageColor(state.stage) } as React.CSSProperties}
        aria-expanded={!!open}
        title={`Part of stage ${state.stage}; click to change`}
        onClick={() => toggle('edit')}
      >
        {state.stage}
      </button>
    );
  } else if (state.kind === 'include') {
    chip = (
      <span
        className="jp-pipeline-role-chip jp-pipeline-include-chip"
        data-role="include"
        title={`The stages of ${state.include} run here, as if its cells stood in this one's place`}
      >
        {`includes ${state.include}`}
      </span>
    );
  } else if (ROLE_TEXT[state.kind]) {
    chip = (
      <button
        className="jp-pipeline-role-chip"
        data-role={state.kind}
        aria-expanded={!!open}
        disabled={state.kind === 'magics'}
        title={state.kind === 'magics' ? 'Cells holding only %pipeline or %load_ext magics are left out' : undefined}
        onClick={() => toggle('edit')}
      >
        {ROLE_TEXT[state.kind]}
      </button>
    );
  }
  const canAdd = state.kind !== 'start' && state.kind !== 'magics';
  let form: JSX.Element | null = null;
  if (open && state.magic) {
    form = (
      <p className="jp-pipeline-cellbar-note">
        The <code>%%stage</code> line at the top of this cell sets its stage; edit that line to change it.{' '}
        <button className="jp-pipeline-link" onClick={props.onClose}>
          Close
        </button>
      </p>
    );
  } else if (open) {
    const initial = open === 'new' ? { ...spec, role: 'stage' as const, stage: null } : spec;
    form = (
      <StageForm
        cellIndex={props.index}
        initial={initial}
        stages={props.stages}
        defaultImage={props.defaultImage}
        onApply={props.onApply}
        onCancel={props.onClose}
      />
    );
  }
  return (
    <>
      <div className="jp-pipeline-cellbar-row" aria-label={`Pipeline stage of ${label}`}>
        {chip}
        {canAdd && !open && (
          <button
            className="jp-pipeline-add-stage"
            title="Make this cell the start of a new stage (S)"
            onClick={() => props.onOpen('new')}
          >
            + Add stage
          </button>
        )}
      </div>
      {form}
    </>
  );
}

/** The bar of one cell: a Lumino widget placed in the cell's layout above its input. */
class StageBar extends ReactWidget {
  props: IBarProps | null = null;

  constructor() {
    super();
    this.addClass(BAR_CLASS);
  }

  protected render(): JSX.Element | null {
    return this.props ? <Bar {...this.props} /> : null;
  }
}

export interface IStageBarsOptions {
  /** Stage names known for the notebook (from the server's answer and the tags). */
  stages: () => string[];
  defaultImage: () => string;
  /** The one stage of a notebook without stage tags, as the server named it (null if not known). */
  wholeNotebookStage: () => string | null;
  /** Called after tags were written (so the sidebar re-validates at once). */
  onApplied?: () => void;
}

/**
 * The stage bars of one notebook panel: one per code cell, refreshed on every change of the
 * notebook (cells added, tags or sources edited), at most once per animation frame.
 */
export class StageBars implements IDisposable {
  constructor(
    private readonly _panel: NotebookPanel,
    private readonly _options: IStageBarsOptions
  ) {
    void _panel.context.ready.then(() => {
      if (this._disposed || !_panel.model) {
        return;
      }
      _panel.model.contentChanged.connect(this.schedule, this);
      _panel.model.cells.changed.connect(this.schedule, this);
      _panel.content.activeCellChanged.connect(this._onActiveCell, this);
      this.schedule();
    });
    _panel.disposed.connect(() => this.dispose());
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** Open the form on `cell`: `new` makes it a stage, `edit` edits what it is; `auto` picks. */
  open(cell: Cell, mode: OpenMode | 'auto' = 'auto'): void {
    const index = this._panel.content.widgets.indexOf(cell);
    if (index < 0 || cell.model.type !== 'code') {
      return;
    }
    if (mode === 'auto') {
      const kind = cellStates(this._cells(), this._options.wholeNotebookStage())[index].kind;
      mode = kind === 'outside' || kind === 'continue' ? 'new' : 'edit';
    }
    this._open = { cell: cell.model.id, mode };
    this.refresh();
  }

  close(refocus = true): void {
    const cellId = this._open?.cell;
    this._open = null;
    this.refresh();
    if (refocus) {
      const nb = this._panel.content;
      const index = nb.widgets.findIndex(c => c.model.id === cellId);
      if (index >= 0) {
        nb.activeCellIndex = index;
      }
      nb.mode = 'command';
      nb.node.focus();
    }
  }

  schedule(): void {
    if (this._frame === null && !this._disposed) {
      this._frame = requestAnimationFrame(() => {
        this._frame = null;
        this.refresh();
      });
    }
  }

  /** Bring every bar up to date now. */
  refresh(): void {
    if (this._disposed || !this._panel.model) {
      return;
    }
    const cells = this._cells();
    const states = cellStates(cells, this._options.wholeNotebookStage());
    const stages = Array.from(new Set([...this._options.stages(), ...declaredStages(cells)]));
    const defaultImage = this._options.defaultImage();
    this._panel.content.widgets.forEach((cell, i) => {
      const state = states[i];
      const colour = state.stage ? stageColor(state.stage) : null;
      cell.node.classList.toggle(STAGE_CELL_CLASS, !!colour);
      if (colour) {
        cell.node.style.setProperty('--jp-pipeline-chip-color', colour);
      } else {
        cell.node.style.removeProperty('--jp-pipeline-chip-color');
      }
      if (cell.model.type !== 'code') {
        return;
      }
      const bar = this._barOf(cell);
      if (!bar) {
        return;
      }
      const open = this._open?.cell === cell.model.id ? this._open.mode : null;
      bar.props = {
        index: i,
        state,
        tags: [...((cell.model.getMetadata('tags') as string[] | undefined) ?? [])],
        stages,
        defaultImage,
        open,
        onOpen: mode => this.open(cell, mode),
        onClose: () => this.close(),
        onApply: spec => this._apply(cell, spec)
      };
      bar.node.classList.toggle('jp-mod-open', !!open);
      bar.update();
    });
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    if (this._frame !== null) {
      cancelAnimationFrame(this._frame);
    }
    const model = this._panel.model;
    if (model) {
      model.contentChanged.disconnect(this.schedule, this);
      model.cells.changed.disconnect(this.schedule, this);
    }
    this._panel.content.activeCellChanged.disconnect(this._onActiveCell, this);
    for (const cell of this._panel.content.widgets) {
      this._bars.get(cell)?.dispose();
      cell.node.classList.remove(STAGE_CELL_CLASS);
    }
  }

  private _cells(): ICellLike[] {
    return cellsOf(this._panel.model);
  }

  /** The cell's bar, placed above its input once the cell is rendered (null until then). */
  private _barOf(cell: Cell): StageBar | null {
    const existing = this._bars.get(cell);
    if (existing && !existing.isDisposed && existing.parent === cell) {
      return existing;
    }
    if (!cell.inputArea) {
      // A placeholder cell (windowed notebook): place the bar once it is rendered.
      void cell.ready.then(() => this.schedule());
      return null;
    }
    const bar = new StageBar();
    const layout = cell.layout as PanelLayout;
    const input = layout.widgets.findIndex(w => w.hasClass('jp-Cell-inputWrapper'));
    layout.insertWidget(input < 0 ? 0 : input, bar);
    this._bars.set(cell, bar);
    return bar;
  }

  private _apply(cell: Cell, spec: ICellSpec): void {
    const tags = writeCellSpec(cell.model.getMetadata('tags') as string[] | undefined, spec);
    if (tags.length) {
      cell.model.setMetadata('tags', tags);
    } else {
      cell.model.deleteMetadata('tags');
    }
    this.close();
    this._options.onApplied?.();
  }

  private _onActiveCell(): void {
    // A form left open on another cell closes without applying, as a popup would.
    const active = this._panel.content.activeCell;
    if (this._open && active && active.model.id !== this._open.cell) {
      this.close(false);
    }
  }

  private _bars = new WeakMap<Cell, StageBar>();
  private _open: { cell: string; mode: OpenMode } | null = null;
  private _frame: number | null = null;
  private _disposed = false;
}
