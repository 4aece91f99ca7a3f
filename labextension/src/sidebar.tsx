/**
 * The "Pipeline" left-sidebar panel: stage editor, graph, parameters, problems and runs of the
 * active notebook.
 */
import { ReactWidget, UseSignal } from '@jupyterlab/apputils';
import { refreshIcon, runIcon } from '@jupyterlab/ui-components';
import * as React from 'react';
import { IRunRecord, StageStatus } from './api';
import { StageEditor } from './editor';
import { PipelineGraph } from './graph';
import { PipelineModel } from './model';
import { RunsList } from './runs';
import { ICellSpec } from './tags';

export interface ISidebarActions {
  selectCell: (index: number) => void;
  applySpec: (spec: ICellSpec) => void;
  publish: () => void;
  openStageNotebook: (run: IRunRecord, stage: string) => void;
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
  const nb = panel.content;
  const cell = nb.activeCell;
  const latest = model.runs.find(r => model.expanded.has(r.run_id)) ?? null;
  const status: Record<string, StageStatus> | undefined = latest
    ? Object.fromEntries(Object.entries(latest.stages ?? {}).map(([k, v]) => [k, v.status]))
    : undefined;
  const problems = pipeline?.problems ?? [];
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
      <Section title="Stage of the active cell" id="editor">
        <StageEditor
          cellIndex={cell ? nb.activeCellIndex : -1}
          cellType={cell?.model.type ?? 'code'}
          cellId={cell?.model.id ?? 'none'}
          tags={(cell?.model.getMetadata('tags') as string[] | undefined) ?? []}
          source={cell?.model.sharedModel.getSource() ?? ''}
          stages={model.stageNames()}
          defaultImage={model.settings.defaultImage || String(model.serverConfig.default_image ?? '')}
          onApply={actions.applySpec}
        />
      </Section>
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
            onSelectStage={name => {
              const stage = pipeline.stages.find(s => s.name === name);
              if (stage && stage.cells.length) {
                actions.selectCell(stage.cells[0]);
              }
            }}
          />
        )}
      </Section>
      <Section title="Parameters" id="parameters" count={pipeline?.parameters.length}>
        {pipeline && pipeline.parameters.length === 0 && (
          <p className="jp-pipeline-empty">No parameters cell (tag one <code>parameters</code>).</p>
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
        <ul className="jp-pipeline-problems" aria-label="Problems">
          {problems.map((p, i) => (
            <li key={i}>
              <button
                className={`jp-pipeline-problem jp-pipeline-severity-${p.severity}`}
                data-code={p.code}
                disabled={p.cell === null || p.cell === undefined}
                onClick={() => p.cell !== null && p.cell !== undefined && actions.selectCell(p.cell)}
                title={p.cell !== null && p.cell !== undefined ? `Select cell ${p.cell + 1}` : undefined}
              >
                <span className="jp-pipeline-severity">{p.severity}</span>
                <span className="jp-pipeline-problem-message">{p.message}</span>
                {p.cell !== null && p.cell !== undefined && (
                  <span className="jp-pipeline-muted">
                    {' '}
                    cell {p.cell + 1}
                    {p.line ? `:${p.line}` : ''}
                  </span>
                )}
              </button>
            </li>
          ))}
        </ul>
      </Section>
      <Section title="Runs" id="runs" count={model.runs.length}>
        <RunsList
          runs={model.runs}
          expanded={model.expanded}
          error={model.runsError}
          onToggle={id => {
            model.toggleRun(id);
            void model.refreshRuns();
          }}
          onCancel={id => void model.cancel(id)}
          onOpenNotebook={actions.openStageNotebook}
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
