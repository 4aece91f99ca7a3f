/**
 * Actions on a run of the Runs list: "Resume" a run that did not succeed, and on each stage that ran,
 * "Debug in a notebook" (a notebook with the stage's inputs and code) and "Re-run from here".
 * The buttons only call back; index.ts does the requests and opens what they answer.
 */
import * as React from 'react';
import { IRunRecord, IStageRecord } from './api';

export interface IRunActions {
  resume: (run: IRunRecord) => void;
  debug: (run: IRunRecord, stage: string) => void;
  rerunFrom: (run: IRunRecord, stage: string) => void;
  /** Whether the run's target reuses stages of earlier runs (what "Re-run from here" needs). */
  canRerun: (run: IRunRecord) => boolean;
  /** Open the comparison of `runs` (compareview.tsx); `sweepId` when they are a sweep's variants. */
  compare?: (runs: IRunRecord[], sweepId?: string) => void;
}

/** Run states a run can be resumed from. */
export const RESUMABLE = ['failed', 'cancelled', 'interrupted'];

export function canResume(run: IRunRecord): boolean {
  return RESUMABLE.includes(run.status);
}

/** A stage that started left its stage notebook in the store, which its debug notebook is made from. */
export function canDebug(rec: IStageRecord): boolean {
  return !!rec.started_at && rec.status !== 'running' && rec.status !== 'pending';
}

export function canRerunFrom(run: IRunRecord, actions: IRunActions): boolean {
  return run.status !== 'running' && actions.canRerun(run);
}

export function hasStageActions(run: IRunRecord, rec: IStageRecord, actions?: IRunActions): boolean {
  return !!actions && (canDebug(rec) || canRerunFrom(run, actions));
}

/** Kinds (`metadata.jupyter_pipeline.kind`) of a debug notebook's cells that prepare the stage's code. */
const PREPARING = ['parameters', 'setup', 'inputs', 'folder', 'files-in', 'map-item'];

/** The cells of a debug notebook to run on opening: those before the stage's own code. */
export function preparingCells(kinds: (string | undefined)[]): number[] {
  const first = kinds.findIndex(k => k !== undefined && !PREPARING.includes(k) && k !== 'header');
  return kinds.map((k, i) => i).filter(i => (first < 0 || i < first) && PREPARING.includes(kinds[i] ?? ''));
}

/** A run's own buttons: "Resume" (a run that did not succeed), "Compare sweep" (a sweep's variant). */
export function RunButtons(props: { run: IRunRecord; runs: IRunRecord[]; actions: IRunActions }): JSX.Element {
  const { run, actions } = props;
  const sweep = run.sweep_id;
  return (
    <>
      {canResume(run) && (
        <button
          className="jp-mod-styled jp-mod-accept jp-pipeline-resume"
          title="Re-run the stages that did not succeed (with the notebook as saved now); keep the others"
          onClick={() => actions.resume(run)}
        >
          Resume
        </button>
      )}
      {sweep && actions.compare && (
        <button
          className="jp-mod-styled jp-pipeline-compare-sweep"
          title="Compare the variants of this sweep: parameters, metrics, the best one"
          onClick={() => actions.compare?.(props.runs.filter(r => r.sweep_id === sweep), sweep)}
        >
          Compare sweep
        </button>
      )}
    </>
  );
}

export function StageActions(props: { run: IRunRecord; stage: string; actions: IRunActions }): JSX.Element | null {
  const { run, stage, actions } = props;
  const rec = run.stages[stage];
  const debug = canDebug(rec);
  const rerun = canRerunFrom(run, actions);
  if (!debug && !rerun) {
    return null;
  }
  return (
    <span className="jp-pipeline-stage-actions">
      {debug && (
        <button
          className="jp-pipeline-link jp-pipeline-debug-stage"
          title={`Open a notebook that loads the inputs stage ${stage} had in this run, followed by its code`}
          onClick={() => actions.debug(run, stage)}
        >
          Debug in a notebook
        </button>
      )}
      {rerun && (
        <button
          className="jp-pipeline-link jp-pipeline-rerun-from"
          title={`Run ${stage} and every stage after it again; reuse the stages before it`}
          onClick={() => actions.rerunFrom(run, stage)}
        >
          Re-run from here
        </button>
      )}
    </span>
  );
}
