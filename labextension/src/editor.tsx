/**
 * The stage form shown on a cell (under its stage bar): role, name, runs after, GPUs, image,
 * resources, retries/timeout/cache, and further options as free-form tags under "More".
 * It writes standard `metadata.tags` (see tags.ts), nothing else.
 */
import * as React from 'react';
import { CellRole, ICellSpec, MORE_KEYS, specErrors } from './tags';

export interface IStageFormProps {
  /** 0-based index of the cell; shown 1-based, as JupyterLab shows cells. */
  cellIndex: number;
  initial: ICellSpec;
  /** Stages declared in the notebook, for the `after` choices and name suggestions. */
  stages: string[];
  defaultImage: string;
  onApply: (spec: ICellSpec) => void;
  onCancel: () => void;
}

const ROLES: { value: CellRole; label: string }[] = [
  { value: 'stage', label: 'Starts a stage' },
  { value: 'none', label: 'Continues the stage above' },
  { value: 'setup', label: 'Setup: runs in every stage' },
  { value: 'parameters', label: 'Parameters' },
  { value: 'skip', label: 'Skip: not in the pipeline' }
];

/** The form's whole-number fields: what an empty field (or one below `min`) stands for. */
interface INumberField {
  key: 'gpu' | 'retries' | 'timeout' | 'workers';
  label: string;
  min: number;
  max?: number;
  empty: number | null;
  placeholder?: string;
  title?: string;
}

const GPU_FIELD: INumberField = { key: 'gpu', label: 'GPUs', min: 0, max: 16, empty: 0 };
/** How a stage runs, after its resources. */
const RUN_FIELDS: INumberField[] = [
  { key: 'retries', label: 'Retries', min: 0, empty: null, placeholder: '0' },
  { key: 'timeout', label: 'Timeout (s)', min: 1, empty: null, placeholder: 'none' },
  {
    key: 'workers',
    label: 'Workers',
    min: 1,
    empty: 1,
    title: 'Replicas of the stage started together (distributed training); 1 = not distributed'
  }
];

/**
 * A whole-number field (its input's class is `jp-pipeline-KEY`). It shows what was typed, so
 * clearing it to type anew does not put the `empty` value in front of the new digits.
 */
function NumberField(props: {
  field: INumberField;
  spec: ICellSpec;
  set: (patch: Partial<ICellSpec>) => void;
}): JSX.Element {
  const { field } = props;
  const value = props.spec[field.key];
  const [text, setText] = React.useState(value === null ? '' : String(value));
  const read = (typed: string): number | null => {
    const n = Number.parseInt(typed, 10);
    return Number.isFinite(n) && n >= field.min ? n : field.empty;
  };
  return (
    <label className="jp-pipeline-field" title={field.title}>
      <span>{field.label}</span>
      <input
        className={`jp-mod-styled jp-pipeline-${field.key}`}
        type="number"
        min={field.min}
        max={field.max}
        placeholder={field.placeholder}
        value={text}
        onChange={ev => {
          setText(ev.target.value);
          props.set({ [field.key]: read(ev.target.value) });
        }}
      />
    </label>
  );
}

export function StageForm(props: IStageFormProps): JSX.Element {
  const [spec, setSpec] = React.useState<ICellSpec>(props.initial);
  const [moreText, setMoreText] = React.useState(props.initial.more.join('\n'));
  const [tried, setTried] = React.useState(false);
  const [moreOpen, setMoreOpen] = React.useState(props.initial.more.length > 0);
  const uid = React.useId().replace(/:/g, '');
  const full = { ...spec, more: moreText.split('\n').map(t => t.trim()).filter(Boolean) };
  const errors = specErrors(full);
  const stage = spec.role === 'stage';
  const others = props.stages.filter(s => s !== spec.stage);
  const set = (patch: Partial<ICellSpec>) => setSpec(s => ({ ...s, ...patch }));

  const apply = (ev?: React.FormEvent) => {
    ev?.preventDefault();
    setTried(true);
    if (Object.keys(errors).length === 0) {
      props.onApply(full);
    }
  };
  const onKeyDown = (ev: React.KeyboardEvent) => {
    if (ev.key === 'Escape') {
      ev.preventDefault();
      ev.stopPropagation();
      props.onCancel();
    } else if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey || (ev.target as HTMLElement).tagName === 'INPUT')) {
      // Handled here: inside a notebook, the browser's implicit form submission does not happen.
      apply(ev);
    }
  };
  const error = (field: keyof typeof errors) =>
    tried && errors[field] ? (
      <span id={`${uid}-${field}-error`} className="jp-pipeline-field-error" role="alert">
        {errors[field]}
      </span>
    ) : null;

  return (
    <form
      className="jp-pipeline-stage-form"
      aria-label={`Stage of cell ${props.cellIndex + 1}`}
      onSubmit={apply}
      onKeyDown={onKeyDown}
    >
      <div className="jp-pipeline-form-row">
        <label className="jp-pipeline-field">
          <span>Role</span>
          <select
            className="jp-mod-styled jp-pipeline-role"
            value={spec.role}
            onChange={ev => set({ role: ev.target.value as CellRole })}
          >
            {ROLES.map(r => (
              <option key={r.value} value={r.value}>
                {r.label}
              </option>
            ))}
          </select>
        </label>
        {stage && (
          <label className="jp-pipeline-field jp-pipeline-field-name">
            <span>Stage name</span>
            <input
              className="jp-mod-styled jp-pipeline-stage-name"
              list={`${uid}-names`}
              value={spec.stage ?? ''}
              placeholder="e.g. train"
              autoFocus
              spellCheck={false}
              aria-invalid={tried && errors.stage ? true : undefined}
              aria-describedby={tried && errors.stage ? `${uid}-stage-error` : undefined}
              onChange={ev => set({ stage: ev.target.value.trim() || null })}
            />
            <datalist id={`${uid}-names`}>
              {props.stages.map(s => (
                <option key={s} value={s} />
              ))}
            </datalist>
            {error('stage')}
          </label>
        )}
      </div>
      {stage && (
        <>
          <fieldset className="jp-pipeline-after">
            <legend>Runs after</legend>
            {others.length === 0 && <span className="jp-pipeline-muted">no other stages</span>}
            {others.map(other => (
              <label key={other} className="jp-pipeline-check">
                <input
                  type="checkbox"
                  value={other}
                  checked={spec.after.includes(other)}
                  onChange={ev =>
                    set({ after: ev.target.checked ? [...spec.after, other] : spec.after.filter(a => a !== other) })
                  }
                />
                {other}
              </label>
            ))}
            <span className="jp-pipeline-muted jp-pipeline-hint">besides the stages whose variables it uses</span>
          </fieldset>
          <div className="jp-pipeline-form-grid">
            <NumberField field={GPU_FIELD} spec={spec} set={set} />
            <label className="jp-pipeline-field jp-pipeline-field-wide">
              <span>Image</span>
              <input
                className="jp-mod-styled jp-pipeline-image"
                placeholder={props.defaultImage || 'the notebook\'s or server\'s default'}
                value={spec.image ?? ''}
                spellCheck={false}
                onChange={ev => set({ image: ev.target.value.trim() || null })}
              />
            </label>
            <label className="jp-pipeline-field">
              <span>CPU</span>
              <input
                className="jp-mod-styled jp-pipeline-cpu"
                placeholder="e.g. 2 or 500m"
                value={spec.cpu ?? ''}
                onChange={ev => set({ cpu: ev.target.value.trim() || null })}
              />
              {error('cpu')}
            </label>
            <label className="jp-pipeline-field">
              <span>Memory</span>
              <input
                className="jp-mod-styled jp-pipeline-memory"
                placeholder="e.g. 8Gi"
                value={spec.memory ?? ''}
                onChange={ev => set({ memory: ev.target.value.trim() || null })}
              />
              {error('memory')}
            </label>
            {RUN_FIELDS.map(field => (
              <NumberField key={field.key} field={field} spec={spec} set={set} />
            ))}
            <label className="jp-pipeline-check jp-pipeline-field-cache">
              <input
                type="checkbox"
                className="jp-pipeline-cache"
                checked={spec.cache}
                onChange={ev => set({ cache: ev.target.checked })}
              />
              Reuse cached results
            </label>
          </div>
          <label className="jp-pipeline-field jp-pipeline-field-wide jp-pipeline-field-condition">
            <span>Runs only if</span>
            <input
              className="jp-mod-styled jp-pipeline-condition"
              placeholder="always; e.g. accuracy >= min_accuracy"
              value={spec.condition ?? ''}
              spellCheck={false}
              aria-invalid={tried && errors.condition ? true : undefined}
              title="Compare values that stages above bind and pipeline parameters (==, !=, <, <=, >, >=; and, or, not); when false the stage and the stages below it are skipped"
              onChange={ev => set({ condition: ev.target.value.trim() ? ev.target.value : null })}
            />
            {error('condition')}
          </label>
          {spec.workers > 1 && (
            <p className="jp-pipeline-muted jp-pipeline-hint jp-pipeline-workers-hint">
              Distributed: {spec.workers} replicas started together (all or none; if one fails, all stop), each with
              the GPUs, CPU and memory above; rank 0's values are the stage's outputs. Call{' '}
              <code>jupyter_pipeline.distributed().initialize_keras()</code> in the stage. On Kubeflow a JobSet, or
              what the notebook's <code>distributed</code> setting names.
            </p>
          )}
          <button
            type="button"
            className="jp-pipeline-more-toggle"
            aria-expanded={moreOpen}
            onClick={() => setMoreOpen(!moreOpen)}
          >
            <span className={`jp-pipeline-caret${moreOpen ? ' jp-mod-open' : ''}`} aria-hidden="true" />
            More: pod and fan-out options{full.more.length ? ` (${full.more.length})` : ''}
          </button>
          {(moreOpen || (tried && !!errors.more)) && (
            <label className="jp-pipeline-field jp-pipeline-more">
              <span className="jp-pipeline-muted">
                One tag per line: {MORE_KEYS.filter(k => k !== 'limit').map(k => `${k}:`).join(' ')}
              </span>
              <textarea
                className="jp-mod-styled jp-pipeline-more-tags"
                rows={3}
                spellCheck={false}
                placeholder={'env:LOG_LEVEL=debug\nvolume:data-pvc:/data'}
                value={moreText}
                onChange={ev => setMoreText(ev.target.value)}
              />
              {error('more')}
            </label>
          )}
        </>
      )}
      <div className="jp-pipeline-form-actions">
        <span className="jp-pipeline-muted jp-pipeline-hint">Enter applies · Esc cancels</span>
        <button type="button" className="jp-mod-styled jp-mod-reject jp-pipeline-cancel-edit" onClick={props.onCancel}>
          Cancel
        </button>
        <button type="submit" className="jp-mod-styled jp-mod-accept jp-pipeline-apply">
          Apply
        </button>
      </div>
    </form>
  );
}
