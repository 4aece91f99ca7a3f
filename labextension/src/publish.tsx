/**
 * The "Publish as pipeline" dialog: target, experiment and the notebook's parameters.
 */
import { Dialog, ReactWidget, showDialog } from '@jupyterlab/apputils';
import * as React from 'react';
import { IParameter, IRunRequest, Target } from './api';
import { parameterText, parseParameter } from './params';

export interface IPublishOptions {
  path: string;
  parameters: IParameter[];
  defaultTarget: Target;
  kfpHost: string;
  experiment: string;
}

class PublishForm extends ReactWidget {
  target: Target;
  experiment: string;
  values: Record<string, string>;

  constructor(private readonly _opts: IPublishOptions) {
    super();
    this.addClass('jp-pipeline-publish-dialog');
    this.target = _opts.defaultTarget;
    this.experiment = _opts.experiment;
    this.values = Object.fromEntries(_opts.parameters.map(p => [p.name, parameterText(p)]));
  }

  getValue(): IRunRequest {
    const parameters: Record<string, unknown> = {};
    for (const p of this._opts.parameters) {
      parameters[p.name] = parseParameter(p, this.values[p.name] ?? '');
    }
    const request: IRunRequest = { path: this._opts.path, target: this.target, parameters };
    if (this.experiment.trim()) {
      request.experiment = this.experiment.trim();
    }
    return request;
  }

  protected render(): JSX.Element {
    const o = this._opts;
    const set = (fn: () => void) => {
      fn();
      this.update();
    };
    return (
      <div className="jp-pipeline-form">
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
          <option value="local">Local (papermill on this server)</option>
          <option value="kfp-local">Kubeflow, local runner (kfp.local)</option>
          <option value="kfp">
            {`Kubeflow Pipelines${o.kfpHost ? ` (${o.kfpHost})` : ' (no host configured)'}`}
          </option>
        </select>
        <label htmlFor="jp-pipeline-experiment">Experiment</label>
        <input
          id="jp-pipeline-experiment"
          className="jp-mod-styled"
          value={this.experiment}
          onChange={ev => set(() => (this.experiment = ev.target.value))}
        />
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
                onChange={ev => set(() => (this.values[p.name] = ev.target.value))}
              />
            </React.Fragment>
          ))}
        </fieldset>
      </div>
    );
  }
}

/** Show the dialog; resolves to the run request, or null when cancelled. */
export async function showPublishDialog(opts: IPublishOptions): Promise<IRunRequest | null> {
  const result = await showDialog<IRunRequest>({
    title: 'Publish as pipeline',
    body: new PublishForm(opts),
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Publish' })],
    focusNodeSelector: '#jp-pipeline-target'
  });
  return result.button.accept ? result.value : null;
}
