/**
 * The Runs section: runs of the active notebook, newest first; a run expands to its stages
 * with status, duration, metrics, error, and a button opening the executed notebook.
 */
import * as React from 'react';
import { IRunRecord, IStageModel, IStageRecord } from './api';
import { MessageText } from './problems';
import { IRunActions, RunButtons, StageActions, hasStageActions } from './runactions';

export interface IRunsProps {
  runs: IRunRecord[];
  expanded: Set<string>;
  /** A run to scroll into view (the one just published), then `onFocused`. */
  focus?: string | null;
  onFocused?: () => void;
  error: string | null;
  onToggle: (runId: string) => void;
  onCancel: (runId: string) => void;
  onOpenNotebook: (run: IRunRecord, stage: string) => void;
  /** Stage and run actions (runactions.ts): debug a stage, re-run from it, resume the run. */
  actions?: IRunActions;
}

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) {
    return '';
  }
  if (seconds < 60) {
    return `${seconds.toFixed(1)} s`;
  }
  const m = Math.floor(seconds / 60);
  return `${m} min ${Math.round(seconds - m * 60)} s`;
}

/** A stage's error with the (1-based) source cell it failed in, unless the message names it already. */
export function withCell(error: string, cell: number | null | undefined): string {
  return cell && !error.includes(`cell ${cell}`) ? `${error} (cell ${cell})` : error;
}

/** A failed stage's error is red; why a stage was skipped or cancelled is a note. */
export function errorClass(status: string): string {
  return status === 'failed' ? 'jp-pipeline-error' : 'jp-pipeline-muted jp-pipeline-stage-note';
}

/** How the run view names a model a stage registered (`iris v3 (sklearn)`) or promoted (`iris v3 → production`). */
export function modelLabel(model: IStageModel): string {
  if (model.alias) {
    return `${model.name} v${model.version} → ${model.alias}`;
  }
  return `${model.name} v${model.version}${model.format ? ` (${model.format})` : ''}`;
}

function formatValue(v: unknown): string {
  if (typeof v === 'number') {
    return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(4)));
  }
  return typeof v === 'string' ? v : JSON.stringify(v);
}

function stageDuration(rec: IStageRecord, now: number): number | null {
  if (rec.duration !== null && rec.duration !== undefined) {
    return rec.duration;
  }
  if (rec.status === 'running' && rec.started_at) {
    return (now - Date.parse(rec.started_at)) / 1000;
  }
  return null;
}

function runDuration(run: IRunRecord, now: number): number | null {
  if (!run.created_at) {
    return null;
  }
  const end = run.finished_at ? Date.parse(run.finished_at) : now;
  return (end - Date.parse(run.created_at)) / 1000;
}

/** Stage order: the record's insertion order (the server writes stages in pipeline order). */
function stageNames(run: IRunRecord): string[] {
  return Object.keys(run.stages ?? {});
}

/** A page with a corner arrow: "open the executed notebook" (inline, so this module stays DOM-free to test). */
function OpenIcon(): JSX.Element {
  return (
    <svg viewBox="0 0 16 16" width="14" height="14" aria-hidden="true">
      <path
        className="jp-pipeline-open-icon"
        d="M3 1.5h6l4 4V14.5H3zM9 1.5v4h4M6 10.5l4-4M7.5 6.5H10V9"
        fill="none"
        strokeWidth="1.3"
      />
    </svg>
  );
}

/** The current time, ticking every second while `active` (running durations count up between polls). */
function useNow(active: boolean): number {
  const [now, setNow] = React.useState(Date.now());
  React.useEffect(() => {
    if (!active) {
      return;
    }
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [active]);
  return active ? Math.max(now, Date.now()) : Date.now();
}

export function RunsList(props: IRunsProps): JSX.Element {
  const now = useNow(props.runs.some(r => r.status === 'running'));
  const list = React.useRef<HTMLUListElement>(null);
  const { focus, onFocused } = props;
  React.useEffect(() => {
    const item = focus && list.current?.querySelector(`[data-run-id="${CSS.escape(focus)}"]`);
    if (item) {
      item.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
      onFocused?.();
    }
  }, [focus, props.runs]);
  if (props.error) {
    return <p className="jp-pipeline-error" role="alert">Runs unavailable: {props.error}</p>;
  }
  if (props.runs.length === 0) {
    return <p className="jp-pipeline-empty">No runs of this notebook yet.</p>;
  }
  return (
    <ul className="jp-pipeline-runs" aria-label="Runs, newest first" ref={list}>
      {props.runs.map(run => {
        const open = props.expanded.has(run.run_id);
        const detailsId = `jp-pipeline-run-${run.run_id}`;
        return (
          <li key={run.run_id} className="jp-pipeline-run" data-run-id={run.run_id} data-status={run.status}>
            <div className="jp-pipeline-run-header">
              <button
                className="jp-pipeline-run-toggle"
                aria-expanded={open}
                aria-controls={detailsId}
                onClick={() => props.onToggle(run.run_id)}
              >
                <span className={`jp-pipeline-caret${open ? ' jp-mod-open' : ''}`} aria-hidden="true" />
                <span className={`jp-pipeline-badge jp-pipeline-status-${run.status}`}>{run.status}</span>
                <span className="jp-pipeline-run-meta">
                  {run.target} · {formatDuration(runDuration(run, now))}
                  {run.sweep_id && (
                    <span className="jp-pipeline-run-sweep" title={`variant of sweep ${run.sweep_id}`}>
                      {' '}
                      · sweep
                    </span>
                  )}
                </span>
                <span className="jp-pipeline-run-id" title={run.run_id}>
                  {run.run_id}
                </span>
              </button>
            </div>
            {open && (
              <div id={detailsId} className="jp-pipeline-run-details">
                <div className="jp-pipeline-run-actions">
                  {run.status === 'running' && (
                    <button
                      className="jp-mod-styled jp-mod-warn jp-pipeline-cancel"
                      onClick={() => props.onCancel(run.run_id)}
                    >
                      Cancel run
                    </button>
                  )}
                  {props.actions && <RunButtons run={run} runs={props.runs} actions={props.actions} />}
                  {run.url && (
                    <a className="jp-pipeline-kfp-link" href={run.url} target="_blank" rel="noopener noreferrer">
                      Open in Kubeflow Pipelines
                    </a>
                  )}
                </div>
                {Object.keys(run.parameters ?? {}).length > 0 && (
                  <div className="jp-pipeline-run-params">
                    {Object.entries(run.parameters).map(([k, v]) => (
                      <span key={k} className="jp-pipeline-kv">
                        {k}={formatValue(v)}
                      </span>
                    ))}
                  </div>
                )}
                {run.error && (
                  <pre className="jp-pipeline-error">
                    <MessageText text={run.error} />
                  </pre>
                )}
                <table className="jp-pipeline-stage-table">
                  <thead>
                    <tr>
                      <th scope="col">Stage</th>
                      <th scope="col">Status</th>
                      <th scope="col">Time</th>
                      <th scope="col">
                        <span className="jp-pipeline-sr-only">Executed notebook</span>
                      </th>
                    </tr>
                  </thead>
                  <tbody>
                    {stageNames(run).map(name => {
                      const rec = run.stages[name];
                      const metrics = Object.entries(rec.metrics ?? {});
                      const models = rec.models ?? [];
                      return (
                        <React.Fragment key={name}>
                          <tr className="jp-pipeline-stage-row" data-stage={name} data-status={rec.status}>
                            <th scope="row">{name}</th>
                            <td>
                              <span className={`jp-pipeline-badge jp-pipeline-status-${rec.status}`}>
                                {rec.status}
                              </span>
                            </td>
                            <td className="jp-pipeline-time">{formatDuration(stageDuration(rec, now))}</td>
                            <td>
                              {(rec.output_notebook || ['succeeded', 'failed'].includes(rec.status)) && (
                                <button
                                  className="jp-pipeline-open-notebook"
                                  aria-label={`Open the executed notebook of stage ${name}`}
                                  title="Open the executed notebook (read-only)"
                                  onClick={() => props.onOpenNotebook(run, name)}
                                >
                                  <OpenIcon />
                                </button>
                              )}
                            </td>
                          </tr>
                          {(metrics.length > 0 || models.length > 0 || rec.error || rec.skip_reason ||
                            hasStageActions(run, rec, props.actions)) && (
                            <tr className="jp-pipeline-stage-extra">
                              <td colSpan={4}>
                                {metrics.map(([k, v]) => (
                                  <span key={k} className="jp-pipeline-kv jp-pipeline-metric">
                                    {k}={formatValue(v)}
                                  </span>
                                ))}
                                {models.map(m => (
                                  <span
                                    key={`${m.name}:${m.version}:${m.alias ?? ''}`}
                                    className="jp-pipeline-kv jp-pipeline-model"
                                    data-alias={m.alias ?? ''}
                                    title={m.uri ?? ''}
                                  >
                                    {m.alias ? 'promoted' : 'registered'} {modelLabel(m)}
                                  </span>
                                ))}
                                {rec.error && (
                                  <pre className={errorClass(rec.status)}>
                                    <MessageText text={withCell(rec.error, rec.error_cell)} />
                                  </pre>
                                )}
                                {props.actions && <StageActions run={run} stage={name} actions={props.actions} />}
                                {rec.skip_reason && !rec.error && (
                                  <span className="jp-pipeline-muted jp-pipeline-skip-reason">
                                    skipped: {rec.skip_reason}
                                  </span>
                                )}
                              </td>
                            </tr>
                          )}
                        </React.Fragment>
                      );
                    })}
                  </tbody>
                </table>
              </div>
            )}
          </li>
        );
      })}
    </ul>
  );
}
