/**
 * The stage editor for the active cell: role, stage name, `after` stages, GPUs, image.
 * It writes standard `metadata.tags` (see tags.ts), nothing else.
 */
import * as React from 'react';
import { CellRole, ICellSpec, isValidStageName, magicStage, readCellSpec, stageColor } from './tags';

export interface IStageEditorProps {
  /** Index of the active cell, or -1 without one. */
  cellIndex: number;
  cellType: string;
  cellId: string;
  tags: string[];
  source: string;
  /** Stages declared in the notebook, for the `after` choices. */
  stages: string[];
  defaultImage: string;
  onApply: (spec: ICellSpec) => void;
}

const ROLES: { value: CellRole; label: string }[] = [
  { value: 'none', label: 'Continues the stage above' },
  { value: 'stage', label: 'Starts a stage' },
  { value: 'setup', label: 'Setup (runs in every stage)' },
  { value: 'parameters', label: 'Parameters' },
  { value: 'skip', label: 'Skip (not in the pipeline)' }
];

export function StageEditor(props: IStageEditorProps): JSX.Element {
  // Re-initialise the form whenever another cell becomes active or its tags change elsewhere.
  return <StageEditorForm key={`${props.cellId}|${props.tags.join(',')}`} {...props} />;
}

function StageEditorForm(props: IStageEditorProps): JSX.Element {
  const initial = React.useMemo(() => readCellSpec(props.tags), []);
  const [spec, setSpec] = React.useState<ICellSpec>(initial);
  const [name, setName] = React.useState(initial.stage ?? '');
  const magic = magicStage(props.source);
  const uid = `jp-pipeline-editor-${props.cellId}`;

  if (props.cellIndex < 0) {
    return <p className="jp-pipeline-empty">Select a cell to edit its stage.</p>;
  }
  if (props.cellType !== 'code') {
    return (
      <p className="jp-pipeline-empty">
        Cell {props.cellIndex + 1} is a {props.cellType} cell; only code cells are stages.
      </p>
    );
  }
  if (magic) {
    return (
      <p className="jp-pipeline-empty">
        Cell {props.cellIndex + 1} declares stage <strong>{magic}</strong> with <code>%%stage</code>;
        edit its first line to change it.
      </p>
    );
  }

  const nameError =
    spec.role === 'stage' && name && !isValidStageName(name)
      ? 'Lowercase letters, digits, - and _, starting with a letter.'
      : spec.role === 'stage' && !name
        ? 'A stage needs a name.'
        : null;
  const others = props.stages.filter(s => s !== name);
  const apply = (ev?: React.FormEvent) => {
    ev?.preventDefault();
    if (nameError) {
      return;
    }
    props.onApply({ ...spec, stage: spec.role === 'stage' ? name : null });
  };
  const toggleAfter = (stage: string, on: boolean) =>
    setSpec(s => ({
      ...s,
      after: on ? [...s.after, stage] : s.after.filter(a => a !== stage)
    }));

  return (
    <form className="jp-pipeline-editor" aria-label="Stage editor" onSubmit={apply}>
      <div className="jp-pipeline-editor-title">
        Cell {props.cellIndex + 1}
        {spec.role === 'stage' && name && (
          <span className="jp-pipeline-chip" style={{ '--jp-pipeline-chip-color': stageColor(name) } as any}>
            {name}
          </span>
        )}
      </div>
      <label htmlFor={`${uid}-role`}>Role</label>
      <select
        id={`${uid}-role`}
        className="jp-mod-styled jp-pipeline-role"
        value={spec.role}
        onChange={ev => setSpec(s => ({ ...s, role: ev.target.value as CellRole }))}
      >
        {ROLES.map(r => (
          <option key={r.value} value={r.value}>
            {r.label}
          </option>
        ))}
      </select>
      {spec.role === 'stage' && (
        <>
          <label htmlFor={`${uid}-name`}>Stage name</label>
          <input
            id={`${uid}-name`}
            className="jp-mod-styled jp-pipeline-stage-name"
            list={`${uid}-names`}
            value={name}
            aria-invalid={nameError ? true : undefined}
            aria-describedby={nameError ? `${uid}-name-error` : undefined}
            onChange={ev => setName(ev.target.value.trim())}
          />
          <datalist id={`${uid}-names`}>
            {props.stages.map(s => (
              <option key={s} value={s} />
            ))}
          </datalist>
          {nameError && (
            <span id={`${uid}-name-error`} className="jp-pipeline-field-error" role="alert">
              {nameError}
            </span>
          )}
          <fieldset className="jp-pipeline-after">
            <legend>Runs after</legend>
            {others.length === 0 && <span className="jp-pipeline-muted">no other stages</span>}
            {others.map(stage => (
              <label key={stage} className="jp-pipeline-check">
                <input
                  type="checkbox"
                  value={stage}
                  checked={spec.after.includes(stage)}
                  onChange={ev => toggleAfter(stage, ev.target.checked)}
                />
                {stage}
              </label>
            ))}
          </fieldset>
          <label htmlFor={`${uid}-gpu`}>GPUs</label>
          <input
            id={`${uid}-gpu`}
            className="jp-mod-styled jp-pipeline-gpu"
            type="number"
            min={0}
            max={16}
            value={spec.gpu}
            onChange={ev =>
              setSpec(s => ({ ...s, gpu: Math.max(0, Number.parseInt(ev.target.value, 10) || 0) }))
            }
          />
          <label htmlFor={`${uid}-image`}>Image</label>
          <input
            id={`${uid}-image`}
            className="jp-mod-styled jp-pipeline-image"
            placeholder={props.defaultImage || 'default image'}
            value={spec.image ?? ''}
            onChange={ev => setSpec(s => ({ ...s, image: ev.target.value.trim() || null }))}
          />
        </>
      )}
      <div className="jp-pipeline-editor-actions">
        <button type="submit" className="jp-mod-styled jp-mod-accept jp-pipeline-apply" disabled={!!nameError}>
          Apply tags
        </button>
      </div>
    </form>
  );
}
