/**
 * Typed functions for the REST API of the server extension (docs/rest-api.md), one per endpoint.
 *
 * The interfaces mirror the `to_json()` shapes of `jupyter_pipeline.notebook.pipeline` and
 * `jupyter_pipeline.store.records` one to one (snake_case kept on purpose).
 */
import { ServerConnection } from '@jupyterlab/services';
import { PipelineAPIError, requestAPI } from './request';

// -- pipeline (parse + validate) ------------------------------------------------------------------
export interface IStageInput {
  name: string;
  from: string;
}

export interface IStageOptions {
  gpu: number;
  gpu_type: string | null;
  cpu: string | null;
  memory: string | null;
  image: string | null;
  retries: number;
  timeout: number | null;
  cache: boolean;
  /** `map:VAR[:CHUNKS][:as=NAME]`: the stage runs once per item of `map_var`. */
  map_var: string | null;
  map_chunks: number | null;
  map_as: string;
  /** At most this many items at once (`parallelism:N`). */
  parallelism: number | null;
  /** `workers:N`: N replicas started together (1: an ordinary stage). */
  workers: number;
  /** `if:EXPR`: the stage runs only when EXPR holds (absent: always). */
  condition?: string | null;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  secrets: Record<string, string>[];
}

export interface IStage {
  name: string;
  cells: number[];
  after: string[];
  depends_on: string[];
  inputs: IStageInput[];
  outputs: string[];
  parameters: string[];
  gpu: number;
  /** `if:EXPR`: the stage runs only when EXPR holds; null for an unconditional stage. */
  condition?: string | null;
  /** Its outputs a later stage's condition reads (kept as plain values too). */
  scalars?: string[];
  /** The included notebook its cells are in, relative to this notebook's folder ("" or absent: this one). */
  notebook?: string;
  options: IStageOptions;
}

/** A notebook a `notebook:` cell includes (`notebooks` of the pipeline answer). */
export interface INotebookRef {
  path: string;
  /** The notebook holding the reference ("" for this one) and the reference cell's index in it. */
  parent: string;
  cell: number;
  depth: number;
  prefix: string;
  spelling: 'native' | 'kale';
}

/** Stage edges between two notebooks, with the variables they pass. */
export interface INotebookEdge {
  from: string;
  to: string;
  variables: string[];
}

export interface IParameter {
  name: string;
  default: unknown;
  type: string;
  cell: number;
}

export type Severity = 'error' | 'warning' | 'info';

export interface IProblem {
  severity: Severity;
  code: string;
  message: string;
  stage: string | null;
  cell: number | null;
  line: number | null;
  /** The included notebook the cell is in (absent: this notebook). */
  notebook?: string;
}

/** What a pipeline needs on Kubeflow, said before it goes there (`kubeflow` in the pipeline answer). */
export interface IKubeflowNotes {
  image: string;
  /** Where the image setting came from: stage, notebook, environment, server, config file, in-cluster, default. */
  image_source: string;
  /** Working files that travel to the pods, relative to the notebook. */
  files: string[];
  packages?: string[] | null;
  problems: IProblem[];
}

export interface IPipeline {
  name: string;
  path?: string;
  stages: IStage[];
  edges: [string, string][];
  parameters: IParameter[];
  setup_cells?: number[];
  settings?: Record<string, unknown>;
  problems: IProblem[];
  kubeflow?: IKubeflowNotes;
  /** Notebooks included by `notebook:` cells, in reading order. */
  notebooks?: INotebookRef[];
  notebook_edges?: INotebookEdge[];
}

// -- runs -----------------------------------------------------------------------------------------
export type StageStatus =
  | 'pending'
  | 'running'
  | 'succeeded'
  | 'failed'
  | 'skipped'
  | 'cancelled'
  | 'interrupted';

export type RunStatus =
  | 'running'
  | 'succeeded'
  | 'failed'
  | 'cancelled'
  | 'interrupted';

/** A run target's name: `local`, `kfp-local`, `kfp`, or one a Python package adds. */
export type Target = string;

/** A run target as `GET config` lists it. */
export interface ITargetInfo {
  name: Target;
  label: string;
  /** The target cannot work until a Kubeflow Pipelines host is configured. */
  needs_kfp_host: boolean;
  /** The target reuses stages of earlier runs (`incremental`, `from_stage`). */
  reuses_stages?: boolean;
  /** Stages run in a container image the target pulls (the dialog shows the image and its notes). */
  uses_image?: boolean;
}

/** One item of a `map:` stage's run. */
export interface IMapItem {
  index: number;
  status: StageStatus;
  started_at?: string;
  finished_at?: string;
  output_notebook?: string | null;
  metrics?: Record<string, unknown>;
  error?: string | null;
  error_cell?: number | null;
}

/** A model a stage registered (`log_model`) or promoted (`promote_model`: with `alias`). */
export interface IStageModel {
  name: string;
  version: number;
  format?: string;
  uri?: string;
  alias?: string;
}

export interface IStageRecord {
  status: StageStatus;
  started_at: string | null;
  finished_at: string | null;
  duration: number | null;
  output_notebook: string | null;
  input_notebook?: string | null;
  attempts?: number;
  metrics: Record<string, unknown>;
  /** Models the stage registered or promoted. */
  models?: IStageModel[];
  outputs?: string[];
  error?: string | null;
  error_cell?: number | null;
  reused?: boolean;
  /** The run whose identical stage this one shares (sweeps). */
  reused_from?: string | null;
  cache_key?: string | null;
  /** What the cache key hashes: code, setup, parameters, upstream keys. */
  fingerprint?: Record<string, unknown> | null;
  /** With incremental runs: why the stage ran, or that it was reused. */
  why?: string | null;
  /** Per-item state of a `map:` stage. */
  items?: IMapItem[];
  /** Per-replica state of a `workers:` stage. */
  replicas?: IReplica[];
  /** A stage skipped though nothing failed: its `if:` condition (or an upstream stage's) was false, and why. */
  skip_reason?: string | null;
}

export interface IReplica {
  rank: number;
  /** A stage state, or `stopped` when another replica's failure (or the timeout) stopped it. */
  status: StageStatus | 'stopped';
  started_at?: string | null;
  finished_at?: string | null;
  output_notebook: string | null;
  error?: string | null;
  error_cell?: number | null;
}

export interface IRunRecord {
  run_id: string;
  pipeline: string;
  notebook: string;
  status: RunStatus;
  target: Target | string;
  parameters: Record<string, unknown>;
  store: string;
  created_at: string;
  finished_at: string | null;
  stages: Record<string, IStageRecord>;
  edges: [string, string][];
  metrics: Record<string, unknown>;
  error?: string | null;
  external_id?: string | null;
  url: string | null;
  history?: Record<string, unknown>[];
  owner?: { host: string; pid: number } | null;
  /** The sweep this run is a variant of. */
  sweep_id?: string | null;
}

export interface IRunList {
  runs: IRunRecord[];
}

export interface IRunRequest {
  path: string;
  target: Target;
  parameters: Record<string, unknown>;
  experiment?: string;
  /** Only sent when the user configured them in the settings; the server may override. */
  store?: string;
  image?: string;
  kfp_host?: string;
  /** Run once per combination of the grid's values instead (a sweep). */
  sweep?: ISweepRequest;
  /** Reuse the stages unchanged since an earlier run (targets that `reuses_stages`). */
  incremental?: boolean;
  /** Run this stage and those downstream; reuse those upstream from the latest run with the same code. */
  from_stage?: string;
}

/** The `sweep` field of `POST runs`. */
export interface ISweepRequest {
  grid: Record<string, unknown[]>;
  metric?: string;
  goal?: 'max' | 'min';
  max_parallel?: number;
  /** Run this many combinations of the grid, picked at random, instead of all. */
  sample?: number;
}

/** `POST runs` answers `run_id` for a run, `sweep_id` for a sweep (its variants are runs with that `sweep_id`). */
export interface IRunStarted {
  run_id?: string;
  sweep_id?: string;
}

export interface ICompileResult {
  yaml: string;
  path?: string | null;
}

/** `GET config`: the server's effective settings (no secrets). */
export interface IServerConfig {
  store?: string;
  kfp_host?: string | null;
  default_image?: string | null;
  /** The run targets that load on the server, in the order to offer them. */
  targets?: ITargetInfo[];
  [key: string]: unknown;
}

/** An executed notebook (nbformat JSON). */
export type INotebookContent = Record<string, unknown>;

type Settings = ServerConnection.ISettings | undefined;

const q = encodeURIComponent;

// -- one function per endpoint --------------------------------------------------------------------
/** `GET pipeline?path=NB`: parse and validate the saved notebook. */
export function getPipeline(path: string, settings?: Settings): Promise<IPipeline> {
  return requestAPI<IPipeline>(`pipeline?path=${q(path)}`, {}, settings);
}

/**
 * `POST pipeline {path, content}`: validate the notebook's unsaved content.
 *
 * Resolves to `null` when the server does not offer this route (404/405), so the caller falls back
 * to validating the saved file after each save.
 */
export async function validateContent(
  path: string,
  content: unknown,
  settings?: Settings
): Promise<IPipeline | null> {
  try {
    return await requestAPI<IPipeline>(
      'pipeline',
      { method: 'POST', body: JSON.stringify({ path, content }) },
      settings
    );
  } catch (error) {
    if (
      error instanceof PipelineAPIError &&
      (error.status === 404 || error.status === 405)
    ) {
      return null;
    }
    throw error;
  }
}

/** `POST compile {path}`: the KFP YAML (and a copy next to the notebook when `save`). */
export function compilePipeline(
  path: string,
  save = false,
  settings?: Settings
): Promise<ICompileResult> {
  return requestAPI<ICompileResult>(
    'compile',
    { method: 'POST', body: JSON.stringify({ path, save }) },
    settings
  );
}

/** `POST runs`: start a run (or, with `sweep`, a sweep) in the background; answers at once with its id. */
export function startRun(request: IRunRequest, settings?: Settings): Promise<IRunStarted> {
  return requestAPI<IRunStarted>(
    'runs',
    { method: 'POST', body: JSON.stringify(request) },
    settings
  );
}

/** `GET runs[?notebook=NB]`: runs of the configured store (of one notebook), newest first. */
export async function listRuns(notebook?: string, settings?: Settings): Promise<IRunRecord[]> {
  const query = notebook ? `?notebook=${q(notebook)}` : '';
  const data = await requestAPI<IRunList>(`runs${query}`, {}, settings);
  return data.runs ?? [];
}

/** `GET runs/ID`: one run record. */
export function getRun(runId: string, settings?: Settings): Promise<IRunRecord> {
  return requestAPI<IRunRecord>(`runs/${q(runId)}`, {}, settings);
}

/** `DELETE runs/ID`: cancel a running local run. */
export function cancelRun(runId: string, settings?: Settings): Promise<unknown> {
  return requestAPI<unknown>(`runs/${q(runId)}`, { method: 'DELETE' }, settings);
}

/** `POST runs/ID/resume`: re-run the stages of a failed, cancelled or interrupted run that did not succeed. */
export function resumeRun(runId: string, settings?: Settings): Promise<IRunStarted> {
  return requestAPI<IRunStarted>(`runs/${q(runId)}/resume`, { method: 'POST', body: '{}' }, settings);
}

/** What `POST runs/ID/stages/NAME/debug` wrote: the debug notebook's path, relative to the server's root. */
export interface IDebugNotebook {
  path: string;
  run_id: string;
  stage: string;
}

/** `POST runs/ID/stages/NAME/debug`: write a notebook that loads the stage's inputs and holds its cells. */
export function debugStage(runId: string, stage: string, settings?: Settings): Promise<IDebugNotebook> {
  return requestAPI<IDebugNotebook>(
    `runs/${q(runId)}/stages/${q(stage)}/debug`,
    { method: 'POST', body: '{}' },
    settings
  );
}

/** `GET runs/ID/stages/NAME/notebook`: the executed stage notebook as nbformat JSON. */
export function getStageNotebook(
  runId: string,
  stage: string,
  settings?: Settings
): Promise<INotebookContent> {
  return requestAPI<INotebookContent>(
    `runs/${q(runId)}/stages/${q(stage)}/notebook`,
    {},
    settings
  );
}

/** `GET config`: effective store, KFP host and default image. */
export function getConfig(settings?: Settings): Promise<IServerConfig> {
  return requestAPI<IServerConfig>('config', {}, settings);
}

// -- helpers on the records -----------------------------------------------------------------------
/** Whether a run record belongs to the notebook at `path` (server-root relative). */
export function runBelongsTo(run: IRunRecord, path: string): boolean {
  const nb = (run.notebook || '').replace(/\\/g, '/');
  return nb === path || nb.endsWith('/' + path);
}

/** Runs newest first (run ids sort by start time; `created_at` breaks ties). */
export function newestFirst(runs: IRunRecord[]): IRunRecord[] {
  return [...runs].sort((a, b) =>
    (b.created_at || '').localeCompare(a.created_at || '') ||
    b.run_id.localeCompare(a.run_id)
  );
}
