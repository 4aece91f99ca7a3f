/**
 * The "Pipeline" left-sidebar panel: graph, parameters, problems and runs of the active notebook.
 * Stages are edited on the cells themselves (cellbar.tsx).
 */
import { ReactWidget, UseSignal } from '@jupyterlab/apputils';
import { refreshIcon, runIcon } from '@jupyterlab/ui-components';
import * as React from 'react';
import { IRunRecord, StageStatus } from './api';
import { PipelineGraph } from './graph';
import { PipelineModel } from './model';
import { ProblemList } from './problems';
import { IRunActions } from './runactions';
import { RunsList } from './runs';

export interface ISidebarActions {
  selectCell: (index: number) => void;
  /** Open an included notebook (path relative to the sidebar's notebook) at its cell `index`. */
  openNotebookCell: (notebook: string, index: number) => void;
  publish: () => void;
  openStageNotebook: (run: IRunRecord, stage: string) => void;
  /** Resume, debug a stage, re-run from a stage (runactions.tsx). */
  runActions?: IRunActions;
}

function Section(props: { title: string; id: string; count?: number; children: React.ReactNode }) {
  return (
    <section className={`jp-pipeline-section jp-pipeline-section-${props.id}`} aria-labelledby={`jp-pipeline-h-${props.id}`}>
      <h3 id={`jp-pipeline-h-${props.id}`} className="jp-pipeline-section-title">
        {props.title}
        {props.count !== undefined && <span className="jp-pipeline-count">{props.count}</span>}
      </h3>
      {props.children}
    </section>
  );
}

function formatDefault(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v) ?? String(v);
}

function SidebarBody(props: { model: PipelineModel; actions: ISidebarActions }): JSX.Element {
  const { model, actions } = props;
  const panel = model.panel;
  if (!panel || !panel.model) {
    return <p className="jp-pipeline-empty">Open a notebook to see its pipeline.</p>;
  }
  const pipeline = model.pipeline;
  const latest = model.runs.find(r => model.expanded.has(r.run_id)) ?? null;
  const status: Record<string, StageStatus> | undefined = latest
    ? Object.fromEntries(Object.entries(latest.stages ?? {}).map(([k, v]) => [k, v.status]))
    : undefined;
  const noStages = !!pipeline && pipeline.stages.length === 0;
  // Without stages, "no stages" is what the graph already says: no need to list it as an error.
  const problems = (pipeline?.problems ?? []).filter(p => !(noStages && p.code === 'no-stages'));
  const errors = problems.filter(p => p.severity === 'error').length;
  return (
    <>
      <div className="jp-pipeline-header">
        <div className="jp-pipeline-title" title={panel.context.path}>
          {pipeline?.name ?? panel.context.path}
          {model.validating && <span className="jp-pipeline-muted"> · checking…</span>}
          {!model.validating && model.stale && <span className="jp-pipeline-muted"> · save to update</span>}
        </div>
        <button
          className="jp-pipeline-icon-button"
          aria-label="Re-validate the pipeline"
          title="Re-validate the pipeline"
          onClick={() => void model.validate()}
        >
          <refreshIcon.react tag="span" />
        </button>
        <button className="jp-mod-styled jp-mod-accept jp-pipeline-publish" onClick={actions.publish}>
          <runIcon.react tag="span" className="jp-pipeline-inline-icon" /> Publish
        </button>
      </div>
      <Section title="Graph" id="graph" count={pipeline?.stages.length}>
        {model.error && (
          <p className="jp-pipeline-error" role="alert">
            Could not check the pipeline: {model.error}
          </p>
        )}
        {pipeline && (
          <PipelineGraph
            pipeline={pipeline}
            status={status}
            title={panel.context.path.split('/').pop()}
            onSelectStage={name => {
              // The stage's first code cell (a heading above it belongs to the stage too).
              const stage = pipeline.stages.find(s => s.name === name);
              const cells = stage?.cells ?? [];
              if (stage?.notebook) {
                // A stage of an included notebook: its cells are numbered in that notebook.
                if (cells.length) {
                  actions.openNotebookCell(stage.notebook, cells[0]);
                }
                return;
              }
              const first = cells.find(i => panel.model?.cells.get(i)?.type === 'code') ?? cells[0];
              if (first !== undefined) {
                actions.selectCell(first);
              }
            }}
          />
        )}
      </Section>
      <Section title="Parameters" id="parameters" count={pipeline?.parameters.length}>
        {pipeline && pipeline.parameters.length === 0 && (
          <p className="jp-pipeline-empty">
            None: tag a cell of <code>name = value</code> lines <code>parameters</code>.
          </p>
        )}
        {pipeline && pipeline.parameters.length > 0 && (
          <table className="jp-pipeline-params">
            <tbody>
              {pipeline.parameters.map(p => (
                <tr key={p.name}>
                  <th scope="row">{p.name}</th>
                  <td>{formatDefault(p.default)}</td>
                  <td className="jp-pipeline-muted">{p.type}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Section>
      <Section title="Problems" id="problems" count={problems.length}>
        {pipeline && problems.length === 0 && <p className="jp-pipeline-empty">No problems.</p>}
        {errors > 0 && (
          <p className="jp-pipeline-muted">
            {errors} error{errors === 1 ? '' : 's'} to fix before publishing. Click one to go to its cell.
          </p>
        )}
        <ProblemList
          problems={problems}
          onSelectCell={(index, notebook) =>
            notebook ? actions.openNotebookCell(notebook, index) : actions.selectCell(index)
          }
        />
      </Section>
      <Section title="Runs" id="runs" count={model.runs.length}>
        {model.runs.length > 1 && actions.runActions?.compare && (
          <button
            className="jp-pipeline-link jp-pipeline-compare-runs"
            title="Parameters and metrics of this notebook's runs side by side, the best marked, and a chart"
            onClick={() => actions.runActions?.compare?.(model.runs)}
          >
            Compare runs
          </button>
        )}
        <RunsList
          runs={model.runs}
          expanded={model.expanded}
          focus={model.focusRun}
          onFocused={() => (model.focusRun = null)}
          error={model.runsError}
          onToggle={id => {
            model.toggleRun(id);
            void model.refreshRuns();
          }}
          onCancel={id => void model.cancel(id)}
          onOpenNotebook={actions.openStageNotebook}
          actions={actions.runActions}
        />
      </Section>
    </>
  );
}

export class PipelineSidebar extends ReactWidget {
  constructor(
    private readonly _model: PipelineModel,
    private readonly _actions: ISidebarActions
  ) {
    super();
    this.addClass('jp-pipeline-sidebar');
    this.id = 'jupyter-pipeline-sidebar';
  }

  protected render(): JSX.Element {
    return (
      <UseSignal signal={this._model.changed}>
        {() => <SidebarBody model={this._model} actions={this._actions} />}
      </UseSignal>
    );
  }
}
