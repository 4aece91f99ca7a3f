/**
 * Reading and writing the pipeline's cell tags (docs/tags.md) in `metadata.tags`.
 *
 * Pure functions, no JupyterLab imports, so they are unit-tested directly. Reading accepts the
 * Kale spellings the converter accepts; writing always emits the native dialect and leaves every
 * tag it does not own (other tools', `cpu:`, `retries:`...) untouched and in order.
 */

/** What a cell is to the pipeline, as the stage editor offers it. */
export type CellRole = 'none' | 'stage' | 'setup' | 'parameters' | 'skip';

export interface ICellSpec {
  role: CellRole;
  /** Stage name when `role` is `stage`. */
  stage: string | null;
  after: string[];
  gpu: number;
  /** Accelerator type of `gpu:N:TYPE`, preserved when only the count is edited. */
  gpuType: string | null;
  image: string | null;
  /** Kubernetes quantities of `cpu:X` and `memory:X`. */
  cpu: string | null;
  memory: string | null;
  retries: number | null;
  /** Seconds. */
  timeout: number | null;
  /** False for `cache:off` (Kale: `cache:disabled`). */
  cache: boolean;
  /** Replicas started together (`workers:N`, N ≥ 2); 1 is a stage as usual, one process. */
  workers: number;
  /** `if:EXPR`: the stage runs only when EXPR holds (values of stages above, parameters). */
  condition: string | null;
  /** Further pipeline tags kept as written: pod options, fan-out (`env:`, `volume:`, `map:`...). */
  more: string[];
}

export const STAGE_NAME_RE = /^[a-z][a-z0-9_-]{0,62}$/;
export const QUANTITY_RE = /^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$/;
const MAGIC_RE = /^\s*%%stage\s+([^\s]+)/;
/** Line magics of this package; a cell of only these is not part of the pipeline. */
const PIPELINE_MAGIC_RE = /^\s*%(pipeline\b|(re)?load_ext\s+jupyter_pipeline\s*$)/;

const ROLE_TAGS: Record<string, CellRole> = {
  parameters: 'parameters',
  'pipeline-parameters': 'parameters',
  setup: 'setup',
  imports: 'setup',
  functions: 'setup',
  skip: 'skip'
};

/** Tag keys the editor's fields own. */
const FIELD_KEYS = [
  'stage',
  'step',
  'block',
  'after',
  'prev',
  'gpu',
  'image',
  'cpu',
  'memory',
  'retries',
  'timeout',
  'cache',
  'workers',
  'if'
];
/** Tag keys of pipeline options the editor shows as free-form tags under "more". */
export const MORE_KEYS = [
  'env',
  'volume',
  'secret',
  'label',
  'annotation',
  'node',
  'toleration',
  'shm',
  'map',
  'parallelism',
  'limit'
];

export function emptySpec(): ICellSpec {
  return {
    role: 'none',
    stage: null,
    after: [],
    gpu: 0,
    gpuType: null,
    image: null,
    cpu: null,
    memory: null,
    retries: null,
    timeout: null,
    cache: true,
    workers: 1,
    condition: null,
    more: []
  };
}

export function isValidStageName(name: string): boolean {
  return STAGE_NAME_RE.test(name);
}

function isGpuLimit(tag: string): boolean {
  return /^limit:.*\/gpu:/.test(tag);
}

/** Whether `tag` is one the stage editor owns (and so rewrites). */
export function isOwnedTag(tag: string): boolean {
  if (tag in ROLE_TAGS) {
    return true;
  }
  const [key, value] = splitTag(tag);
  return value !== null && (FIELD_KEYS.includes(key) || MORE_KEYS.includes(key));
}

function splitTag(tag: string): [string, string | null] {
  const i = tag.indexOf(':');
  return i < 0 ? [tag, null] : [tag.slice(0, i), tag.slice(i + 1)];
}

function wholeNumber(text: string): number | null {
  return /^\d+$/.test(text) ? Number.parseInt(text, 10) : null;
}

/** The cell's pipeline spec from its tags (native and Kale spellings). */
export function readCellSpec(tags: readonly string[] | undefined): ICellSpec {
  const spec = emptySpec();
  for (const tag of tags ?? []) {
    if (tag in ROLE_TAGS) {
      spec.role = ROLE_TAGS[tag];
      continue;
    }
    const [key, value] = splitTag(tag);
    if (value === null) {
      continue;
    }
    switch (key) {
      case 'stage':
      case 'step':
      case 'block':
        // Kale's editor writes an empty `block:`/`step:` for "continue the stage above".
        if (value || key === 'stage') {
          spec.role = 'stage';
          spec.stage = value;
        }
        break;
      case 'after':
      case 'prev':
        if (value && !spec.after.includes(value)) {
          spec.after.push(value);
        }
        break;
      case 'gpu': {
        const [count, type] = splitTag(value);
        const n = wholeNumber(count);
        if (n !== null) {
          spec.gpu = n;
          spec.gpuType = type || null;
        }
        break;
      }
      case 'image':
        spec.image = value || null;
        break;
      case 'cpu':
      case 'memory':
        spec[key] = value || null;
        break;
      case 'retries':
      case 'timeout':
        spec[key] = wholeNumber(value);
        break;
      case 'workers':
        // The converter refuses workers:0 and workers:1 (bad-workers); the form shows them as 1,
        // one process, and writing the cell drops the tag, as it drops an unreadable retries:.
        spec.workers = Math.max(1, wholeNumber(value) ?? 1);
        break;
      case 'cache':
        spec.cache = !['off', 'disabled', 'false', 'no'].includes(value.toLowerCase());
        break;
      case 'if':
        // Several `if:` tags must all hold, as the converter reads them.
        if (value.trim()) {
          spec.condition = spec.condition ? `(${spec.condition}) and (${value.trim()})` : value.trim();
        }
        break;
      default:
        if (isGpuLimit(tag)) {
          spec.gpu = wholeNumber(/\/gpu:(.*)$/.exec(value)?.[1] ?? '') ?? spec.gpu;
        } else if (MORE_KEYS.includes(key)) {
          spec.more.push(tag);
        }
    }
  }
  return spec;
}

/** The stage a `%%stage NAME` first line declares, if any. */
export function magicStage(source: string): string | null {
  const first = source.split('\n', 1)[0] ?? '';
  const m = MAGIC_RE.exec(first);
  return m ? m[1] : null;
}

/** The native tags that express `spec`, in a stable order. */
export function specToTags(spec: ICellSpec): string[] {
  switch (spec.role) {
    case 'setup':
    case 'parameters':
    case 'skip':
      return [spec.role];
    case 'stage': {
      if (!spec.stage) {
        return [];
      }
      const tags = [`stage:${spec.stage}`];
      for (const up of spec.after) {
        if (up && up !== spec.stage && !tags.includes(`after:${up}`)) {
          tags.push(`after:${up}`);
        }
      }
      if (spec.gpu > 0) {
        tags.push(spec.gpuType ? `gpu:${spec.gpu}:${spec.gpuType}` : `gpu:${spec.gpu}`);
      }
      for (const key of ['image', 'cpu', 'memory', 'retries', 'timeout'] as const) {
        if (spec[key] !== null && spec[key] !== '') {
          tags.push(`${key}:${spec[key]}`);
        }
      }
      if (spec.workers > 1) {
        tags.push(`workers:${spec.workers}`);
      }
      if (!spec.cache) {
        tags.push('cache:off');
      }
      if (spec.condition && spec.condition.trim()) {
        tags.push(`if:${spec.condition.trim()}`);
      }
      for (const tag of spec.more) {
        if (tag && !tags.includes(tag)) {
          tags.push(tag);
        }
      }
      return tags;
    }
    default:
      return [];
  }
}

/** What is wrong with the fields of `spec`, by field; empty when it can be written. */
export function specErrors(
  spec: ICellSpec
): Partial<Record<'stage' | 'cpu' | 'memory' | 'condition' | 'more', string>> {
  const errors: Partial<Record<'stage' | 'cpu' | 'memory' | 'condition' | 'more', string>> = {};
  if (spec.role !== 'stage') {
    return errors;
  }
  if (!spec.stage) {
    errors.stage = 'A stage needs a name.';
  } else if (!isValidStageName(spec.stage)) {
    errors.stage = 'Lowercase letters, digits, - and _, starting with a letter.';
  }
  for (const key of ['cpu', 'memory'] as const) {
    const value = spec[key];
    if (value && !QUANTITY_RE.test(value)) {
      errors[key] = `Not a Kubernetes quantity (e.g. ${key === 'cpu' ? '2 or 500m' : '8Gi'}).`;
    }
  }
  if (spec.condition && /[,\n]/.test(spec.condition)) {
    // nbformat does not allow commas in tags; a condition never needs one.
    errors.condition = 'A condition compares names and literals with ==, !=, <, <=, >, >= and and/or/not; no commas.';
  }
  const bad = spec.more.find(t => !MORE_KEYS.includes(splitTag(t)[0]) || splitTag(t)[1] === null);
  if (bad) {
    errors.more = `'${bad}' is not a pod or fan-out option (${MORE_KEYS.map(k => k + ':').join(', ')}).`;
  }
  return errors;
}

/** Whether every non-blank line of a code cell is one of this package's line magics. */
export function isMagicOnly(source: string): boolean {
  const lines = source.split('\n').filter(l => l.trim() && !l.trim().startsWith('#'));
  return lines.length > 0 && lines.every(l => PIPELINE_MAGIC_RE.test(l));
}

/**
 * `tags` with the editor-owned ones replaced by those of `spec`.
 *
 * Our tags go first (so `stage:` reads first in the property inspector); foreign tags keep their
 * order after them.
 */
export function writeCellSpec(tags: readonly string[] | undefined, spec: ICellSpec): string[] {
  const kept = (tags ?? []).filter(t => !isOwnedTag(t));
  const out = [...specToTags(spec)];
  for (const t of kept) {
    if (!out.includes(t)) {
      out.push(t);
    }
  }
  return out;
}

export interface ICellLike {
  cellType: string;
  tags: readonly string[] | undefined;
  source?: string;
}

/** What a cell is in the pipeline, as its stage bar shows it. */
export type CellKind =
  | 'start' // starts a stage (tag or `%%stage`)
  | 'continue' // an untagged code cell that joins the stage above
  | 'setup'
  | 'parameters'
  | 'skip'
  | 'magics' // only this package's line magics: left out of the pipeline
  | 'outside' // untagged code above the first stage
  | 'include' // a `notebook:` cell: another notebook's stages stand here
  | 'other'; // markdown and raw cells

export interface ICellState {
  kind: CellKind;
  /** The stage the cell belongs to (`start` and `continue`). */
  stage: string | null;
  /** True when a `%%stage` line, not tags, makes the cell a stage. */
  magic: boolean;
  /** What a `notebook:` cell includes: the path (or Kale's name, its path being in the cell metadata). */
  include?: string;
}

/** The value of a cell's `notebook:` tag, if it has one. */
export function includedNotebook(tags: readonly string[] | undefined): string | null {
  const tag = (tags ?? []).find(t => t.startsWith('notebook:'));
  return tag === undefined ? null : tag.slice('notebook:'.length);
}

/**
 * What each cell is, following the converter's rule: a `stage:` cell starts a stage, untagged
 * code cells join the stage before them, setup/parameters/skip cells and cells holding only
 * `%pipeline`/`%load_ext jupyter_pipeline` magics belong to none.
 */
export function cellStates(cells: readonly ICellLike[], wholeNotebookStage: string | null = null): ICellState[] {
  // A notebook without stage tags is one stage: its untagged code cells belong to it.
  let current: string | null = declaredStages(cells).length ? null : wholeNotebookStage;
  const whole = current;
  return cells.map(cell => {
    const spec = readCellSpec(cell.tags);
    const include = cell.cellType === 'code' ? includedNotebook(cell.tags) : null;
    if (include !== null) {
      // Untagged code below joins the next stage (or the notebook's one stage), not the one above.
      current = whole;
      return { kind: 'include', stage: null, magic: false, include };
    }
    const magic = cell.cellType === 'code' ? magicStage(cell.source ?? '') : null;
    if (spec.role === 'stage' || magic) {
      current = spec.stage ?? magic;
      return cell.cellType === 'code'
        ? { kind: 'start', stage: current, magic: !!magic && spec.role !== 'stage' }
        : { kind: 'other', stage: null, magic: false };
    }
    if (cell.cellType !== 'code') {
      return { kind: 'other', stage: null, magic: false };
    }
    if (spec.role !== 'none') {
      return { kind: spec.role, stage: null, magic: false };
    }
    if (isMagicOnly(cell.source ?? '')) {
      return { kind: 'magics', stage: null, magic: false };
    }
    return current ? { kind: 'continue', stage: current, magic: false } : { kind: 'outside', stage: null, magic: false };
  });
}

/** The stage each code cell belongs to (`null` for the others, which carry no stage colour). */
export function stageOfCells(cells: readonly ICellLike[]): (string | null)[] {
  return cellStates(cells).map(s => s.stage);
}

/** Stage names declared by tags (or `%%stage` lines) in notebook order, without repeats. */
export function declaredStages(cells: readonly ICellLike[]): string[] {
  const out: string[] = [];
  for (const cell of cells) {
    if (cell.cellType !== 'code') {
      continue;
    }
    const name = readCellSpec(cell.tags).stage ?? magicStage(cell.source ?? '');
    if (name && !out.includes(name)) {
      out.push(name);
    }
  }
  return out;
}

/** A stable hue for a stage name, so a stage's chip and graph node share one colour. */
export function stageHue(name: string): number {
  let h = 0;
  for (let i = 0; i < name.length; i++) {
    h = (h * 31 + name.charCodeAt(i)) >>> 0;
  }
  return (h * 137) % 360;
}

/** CSS colour of a stage (theme-independent hue; lightness adapts via CSS variables). */
export function stageColor(name: string): string {
  return `hsl(${stageHue(name)}, 62%, var(--jp-pipeline-stage-lightness, 45%))`;
}
