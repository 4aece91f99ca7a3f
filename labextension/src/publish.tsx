/**
 * The "Publish as pipeline" dialog: first what validation found (errors refuse publishing, with a
 * way to the Problems list), then target, experiment and the notebook's parameters; with "Sweep",
 * comma-separated values per parameter (one run per combination), a metric and a goal.
 */
import { Dialog, ReactWidget } from '@jupyterlab/apputils';
import * as React from 'react';
import { IKubeflowNotes, IParameter, IProblem, IRunRequest, ITargetInfo, Target } from './api';
import { parameterText, parseParameter, parseSweepGrid, variantCount } from './params';
import { ProblemList } from './problems';

export interface IPublishOptions {
  path: string;
  parameters: IParameter[];
  /** Warnings and notes to show before publishing (errors go to `showPublishRefusal`). */
  problems: IProblem[];
  defaultTarget: Target;
  /** The run targets the server offers (`GET config`), in order. */
  targets: ITargetInfo[];
  /** Empty when no Kubeflow Pipelines host is configured: the `kfp` target is then disabled. */
  kfpHost: string;
  experiment: string;
  /** The image, files and packages the stages get on Kubeflow, and warnings about them. */
  kubeflow: IKubeflowNotes | null;
  /** Open the Settings Editor on the extension's settings. */
  openSettings: () => void;
}

/** Where to set the Kubeflow Pipelines host, in the words of the Settings Editor. */
export const KFP_HOST_SETTING = 'Settings → Settings Editor → Pipeline → Kubeflow Pipelines host';

class PublishForm extends ReactWidget {
  target: Target;
  experiment: string;
  values: Record<string, string>;
  sweep = false;
  sweepValues: Record<string, string> = {};
  metric = '';
  goal: 'max' | 'min' = 'max';
  /** Reuse the stages unchanged since an earlier run (targets that reuse stages: `incremental`). */
  reuse = false;

  constructor(private readonly _opts: IPublishOptions) {
    super();
    this.addClass('jp-pipeline-publish-dialog');
    const usable = _opts.targets.filter(t => _opts.kfpHost || !t.needs_kfp_host).map(t => t.name);
    this.target = usable.includes(_opts.defaultTarget) ? _opts.defaultTarget : usable[0] ?? 'local';
    this.experiment = _opts.experiment;
    this.values = Object.fromEntries(_opts.parameters.map(p => [p.name, parameterText(p)]));
  }

  getValue(): IRunRequest {
    const parameters: Record<string, unknown> = {};
    const grid = this.sweep ? parseSweepGrid(this._opts.parameters, this.sweepValues) : {};
    for (const p of this._opts.parameters) {
      if (!(p.name in grid)) {
        parameters[p.name] = parseParameter(p, this.values[p.name] ?? '');
      }
    }
    const request: IRunRequest = { path: this._opts.path, target: this.target, parameters };
    if (this.reuse && !this.sweep && this._opts.targets.find(t => t.name === this.target)?.reuses_stages) {
      request.incremental = true;
    }
    if (this.sweep) {
      request.sweep = { grid, goal: this.goal };
      if (this.metric.trim()) {
        request.sweep.metric = this.metric.trim();
      }
    }
    if (this.experiment.trim()) {
      request.experiment = this.experiment.trim();
    }
    return request;
  }

  get options(): IPublishOptions {
    return this._opts;
  }

  private renderSweep(set: (fn: () => void) => void): JSX.Element {
    return (
      <div className="jp-pipeline-sweep">
        <label htmlFor="jp-pipeline-sweep-metric">Rank by metric</label>
        <input
          id="jp-pipeline-sweep-metric"
          className="jp-mod-styled"
          placeholder="e.g. accuracy"
          value={this.metric}
          onChange={ev => set(() => (this.metric = ev.target.value))}
        />
        <label htmlFor="jp-pipeline-sweep-goal">Best is the</label>
        <select
          id="jp-pipeline-sweep-goal"
          className="jp-mod-styled"
          value={this.goal}
          onChange={ev => set(() => (this.goal = ev.target.value as 'max' | 'min'))}
        >
          <option value="max">highest value</option>
          <option value="min">lowest value</option>
        </select>
        <p className="jp-pipeline-muted jp-pipeline-sweep-summary">{sweepSummary(this)}</p>
      </div>
    );
  }

  /** Called when the user follows the link to the settings (the dialog closes). */
  onOpenSettings: () => void = () => this._opts.openSettings();

  protected render(): JSX.Element {
    const o = this._opts;
    const set = (fn: () => void) => {
      fn();
      this.update();
    };
    const chosen = o.targets.find(t => t.name === this.target);
    const kubeflow = Boolean(chosen?.uses_image);
    const needsHost = o.targets.some(t => t.needs_kfp_host);
    return (
      <div className="jp-pipeline-form">
        {o.problems.length > 0 && (
          <div className="jp-pipeline-form-problems">
            <p>
              {o.problems.length} {o.problems.length === 1 ? 'note' : 'notes'} from validation; publishing
              works, but check {o.problems.length === 1 ? 'it' : 'them'}:
            </p>
            <ProblemList problems={o.problems} />
          </div>
        )}
        <p className="jp-pipeline-muted">
          Saves <code>{o.path}</code>, then runs it as a pipeline.
        </p>
        <label htmlFor="jp-pipeline-target">Target</label>
        <select
          id="jp-pipeline-target"
          className="jp-mod-styled"
          value={this.target}
          onChange={ev => set(() => (this.target = ev.target.value as Target))}
        >
          {o.targets.map(t => (
            <option key={t.name} value={t.name} disabled={t.needs_kfp_host && !o.kfpHost}>
              {t.needs_kfp_host ? `${t.label} (${o.kfpHost || 'no host configured'})` : t.label}
            </option>
          ))}
        </select>
        {chosen?.reuses_stages && !this.sweep && (
          <label className="jp-pipeline-reuse-toggle">
            <input
              type="checkbox"
              id="jp-pipeline-reuse"
              checked={this.reuse}
              onChange={ev => set(() => (this.reuse = ev.target.checked))}
            />{' '}
            Reuse stages unchanged since an earlier run
          </label>
        )}
        {needsHost && !o.kfpHost && (
          <p className="jp-pipeline-muted jp-pipeline-form-note">
            To publish to a Kubeflow cluster, set its host in{' '}
            <button type="button" className="jp-pipeline-link jp-pipeline-open-settings" onClick={this.onOpenSettings}>
              {KFP_HOST_SETTING}
            </button>
            .
          </p>
        )}
        {kubeflow && o.kubeflow && <KubeflowNotes notes={o.kubeflow} />}
        <label htmlFor="jp-pipeline-experiment">Experiment</label>
        <input
          id="jp-pipeline-experiment"
          className="jp-mod-styled"
          value={this.experiment}
          onChange={ev => set(() => (this.experiment = ev.target.value))}
        />
        {o.parameters.length > 0 && (
          <label className="jp-pipeline-sweep-toggle">
            <input
              type="checkbox"
              id="jp-pipeline-sweep"
              checked={this.sweep}
              onChange={ev => set(() => (this.sweep = ev.target.checked))}
            />{' '}
            Sweep: one run per combination of parameter values
          </label>
        )}
        <fieldset className="jp-pipeline-form-params">
          <legend>Parameters</legend>
          {o.parameters.length === 0 && <span className="jp-pipeline-muted">none</span>}
          {o.parameters.map(p => (
            <React.Fragment key={p.name}>
              <label htmlFor={`jp-pipeline-param-${p.name}`}>
                {p.name} <span className="jp-pipeline-muted">({p.type})</span>
              </label>
              <input
                id={`jp-pipeline-param-${p.name}`}
                className="jp-mod-styled"
                data-parameter={p.name}
                value={this.values[p.name] ?? ''}
                disabled={this.sweep && !!(this.sweepValues[p.name] ?? '').trim()}
                onChange={ev => set(() => (this.values[p.name] = ev.target.value))}
              />
              {this.sweep && (
                <input
                  className="jp-mod-styled jp-pipeline-sweep-values"
                  data-sweep-parameter={p.name}
                  placeholder={`values to sweep, e.g. ${parameterText(p)}, …`}
                  value={this.sweepValues[p.name] ?? ''}
                  onChange={ev => set(() => (this.sweepValues[p.name] = ev.target.value))}
                />
              )}
            </React.Fragment>
          ))}
        </fieldset>
        {this.sweep && this.renderSweep(set)}
      </div>
    );
  }
}

/** Image, travelling files and packages on Kubeflow, with their warnings. */
function KubeflowNotes(props: { notes: IKubeflowNotes }): JSX.Element {
  const { notes } = props;
  const shown = notes.files.slice(0, 6).join(', ') + (notes.files.length > 6 ? ` and ${notes.files.length - 6} more` : '');
  return (
    <div className="jp-pipeline-form-kubeflow">
      <p className="jp-pipeline-form-image">
        Image: <code>{notes.image}</code> <span className="jp-pipeline-muted">({notes.image_source})</span>; a
        stage&apos;s own <code>image:</code> tag wins.
      </p>
      <p className="jp-pipeline-form-files">
        Files that travel: {notes.files.length ? <code>{shown}</code> : <span className="jp-pipeline-muted">none</span>}
      </p>
      {notes.packages && notes.packages.length > 0 && (
        <p>
          Packages each stage installs: <code>{notes.packages.join(' ')}</code>
        </p>
      )}
      {notes.problems.length > 0 && <ProblemList problems={notes.problems} />}
    </div>
  );
}

/** The sweep's metric, goal and how many variants the typed values make. */
function sweepSummary(form: PublishForm): string {
  try {
    const n = variantCount(parseSweepGrid(form.options.parameters, form.sweepValues));
    return `${n} variant${n === 1 ? '' : 's'}`;
  } catch (err) {
    return (err as Error).message;
  }
}

/** Show the dialog; resolves to the run request, or null when cancelled. */
export async function showPublishDialog(opts: IPublishOptions): Promise<IRunRequest | null> {
  const form = new PublishForm(opts);
  const dialog = new Dialog<IRunRequest>({
    title: 'Publish as pipeline',
    body: form,
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Publish' })],
    focusNodeSelector: '#jp-pipeline-target'
  });
  form.onOpenSettings = () => {
    dialog.reject();
    opts.openSettings();
  };
  const result = await dialog.launch();
  return result.button.accept ? result.value : null;
}

/**
 * Refuse to publish a notebook with errors: list them; resolves true when the user asks to see
 * them in the Problems list (or picked one, after `onSelectCell`).
 */
export async function showPublishRefusal(
  errors: IProblem[],
  onSelectCell: (index: number) => void
): Promise<boolean> {
  let dialog: Dialog<unknown> | null = null;
  const body = ReactWidget.create(
    <div className="jp-pipeline-refusal">
      <p>
        The pipeline has {errors.length === 1 ? 'an error' : `${errors.length} errors`}; fix{' '}
        {errors.length === 1 ? 'it' : 'them'} before publishing. Click one to go to its cell.
      </p>
      <ProblemList
        problems={errors}
        onSelectCell={index => {
          dialog?.reject();
          onSelectCell(index);
        }}
      />
    </div>
  );
  dialog = new Dialog({
    title: 'Cannot publish yet',
    body,
    buttons: [Dialog.cancelButton({ label: 'Close' }), Dialog.okButton({ label: 'Show in Problems' })]
  });
  const result = await dialog.launch();
  return result.button.accept;
}
