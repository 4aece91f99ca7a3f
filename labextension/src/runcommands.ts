/**
 * What the Runs list's actions do (resume, re-run from a stage, debug a stage in a notebook, compare
 * runs), and the notification when a run started from this Lab ends.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { MainAreaWidget, Notification, showErrorMessage } from '@jupyterlab/apputils';
import { NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import * as api from './api';
import { CompareView } from './compareview';
import { PipelineModel } from './model';
import { endedMessage } from './notify';
import { IRunActions, preparingCells } from './runactions';

/** Polls the runs this Lab started until they end, then calls `onEnded` once per run. */
export class RunWatcher {
  constructor(
    private readonly onEnded: (run: api.IRunRecord) => void,
    private readonly intervalMs = 2000
  ) {}

  watch(runId: string): void {
    this._ids.add(runId);
    if (this._timer === null) {
      this._timer = setTimeout(() => void this._check(), this.intervalMs);
    }
  }

  private async _check(): Promise<void> {
    this._timer = null;
    for (const id of [...this._ids]) {
      const run = await api.getRun(id).catch(() => null);
      if (run && run.status !== 'running') {
        this._ids.delete(id);
        this.onEnded(run);
      }
    }
    if (this._ids.size) {
      this._timer = setTimeout(() => void this._check(), this.intervalMs);
    }
  }

  private _ids = new Set<string>();
  private _timer: ReturnType<typeof setTimeout> | null = null;
}

/** The Runs list's actions, and a watcher notifying when a run started here ends. */
export function createRunActions(
  app: JupyterFrontEnd,
  model: PipelineModel,
  showRun: (runId: string) => void
): { actions: IRunActions; watcher: RunWatcher } {
  const watcher = new RunWatcher(run => {
    const ok = run.status === 'succeeded';
    Notification.emit(endedMessage(run), ok ? 'success' : run.status === 'failed' ? 'error' : 'warning', {
      autoClose: ok ? 8000 : false,
      actions: [{ label: 'Show run', callback: () => showRun(run.run_id) }]
    });
  });
  const started = async (runId: string | undefined) => {
    if (runId) {
      watcher.watch(runId);
      showRun(runId);
    }
  };

  const debug = async (run: api.IRunRecord, stage: string) => {
    const { path } = await api.debugStage(run.run_id, stage);
    const panel = (await app.commands.execute('docmanager:open', { path, factory: 'Notebook' })) as NotebookPanel;
    await panel.context.ready;
    if (!panel.context.model.dirty) {
      await panel.context.revert(); // written again by this request
    }
    await panel.sessionContext.ready;
    const nb = panel.content;
    const kinds = nb.widgets.map(c => (c.model.getMetadata('jupyter_pipeline') as { kind?: string })?.kind);
    const cells = preparingCells(kinds);
    if (cells.length) {
      // Parameters, setup and inputs are loaded; the stage's own code is the user's to run.
      nb.activeCellIndex = cells[0];
      nb.deselectAll();
      cells.forEach(i => nb.select(nb.widgets[i]));
      await NotebookActions.run(nb, panel.sessionContext);
      nb.activeCellIndex = Math.min(cells[cells.length - 1] + 1, nb.widgets.length - 1);
      nb.deselectAll();
    }
  };

  const actions: IRunActions = {
    resume: run =>
      void api
        .resumeRun(run.run_id)
        .then(r => started(r.run_id))
        .catch(error => showErrorMessage(`Cannot resume run ${run.run_id}`, error as Error)),
    rerunFrom: (run, stage) =>
      void (async () => {
        const panel = model.panel;
        if (!panel) {
          return;
        }
        if (panel.model?.dirty) {
          await panel.context.save(); // the notebook runs from disk
        }
        const request = { path: panel.context.path, target: run.target, parameters: run.parameters, from_stage: stage };
        const { run_id } = await api.startRun(request);
        await started(run_id);
      })().catch(error => showErrorMessage(`Cannot re-run from stage ${stage}`, error as Error)),
    debug: (run, stage) =>
      void debug(run, stage).catch(error => showErrorMessage(`Cannot debug stage ${stage}`, error as Error)),
    canRerun: run => !!model.targets().find(t => t.name === run.target)?.reuses_stages,
    compare: (runs, sweepId) => {
      const path = model.panel?.context.path;
      const reload = path
        ? async () => (await api.listRuns(path)).filter(r => !sweepId || r.sweep_id === sweepId)
        : undefined;
      const view = new MainAreaWidget({ content: new CompareView(runs, reload) });
      view.id = `jp-pipeline-compare-${sweepId ?? path ?? 'runs'}`.replace(/[^\w-]/g, '-');
      view.title.label = sweepId ? `Sweep ${sweepId}` : `Runs of ${(path ?? '').split('/').pop()}`;
      view.title.closable = true;
      app.shell.add(view, 'main', { mode: 'split-right' });
      app.shell.activateById(view.id);
    }
  };
  return { actions, watcher };
}
