/**
 * Reading and writing the pipeline's cell tags (DESIGN.md "Tag dialect") in `metadata.tags`.
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
}

export const STAGE_NAME_RE = /^[a-z][a-z0-9_-]{0,62}$/;
const MAGIC_RE = /^\s*%%stage\s+([^\s]+)/;

const ROLE_TAGS: Record<string, CellRole> = {
  parameters: 'parameters',
  'pipeline-parameters': 'parameters',
  setup: 'setup',
  imports: 'setup',
  functions: 'setup',
  skip: 'skip'
};

export function emptySpec(): ICellSpec {
  return { role: 'none', stage: null, after: [], gpu: 0, gpuType: null, image: null };
}

export function isValidStageName(name: string): boolean {
  return STAGE_NAME_RE.test(name);
}

/** Whether `tag` is one the stage editor owns (and so rewrites). */
export function isOwnedTag(tag: string): boolean {
  if (tag in ROLE_TAGS) {
    return true;
  }
  const [key] = splitTag(tag);
  return (
    ['stage', 'step', 'block', 'after', 'prev', 'gpu', 'image'].includes(key) ||
    /^limit:.*\/gpu:/.test(tag)
  );
}

function splitTag(tag: string): [string, string | null] {
  const i = tag.indexOf(':');
  return i < 0 ? [tag, null] : [tag.slice(0, i), tag.slice(i + 1)];
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
        const n = Number.parseInt(count, 10);
        if (Number.isFinite(n) && n >= 0) {
          spec.gpu = n;
          spec.gpuType = type || null;
        }
        break;
      }
      case 'image':
        spec.image = value || null;
        break;
      case 'limit': {
        const m = /\/gpu:(\d+)$/.exec(value);
        if (m) {
          spec.gpu = Number.parseInt(m[1], 10);
        }
        break;
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
      if (spec.image) {
        tags.push(`image:${spec.image}`);
      }
      return tags;
    }
    default:
      return [];
  }
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

/**
 * The stage each cell belongs to, following the converter's rule: a `stage:` cell starts a stage,
 * untagged code cells join the stage before them, setup/parameters/skip cells belong to none.
 * Markdown cells get `null` (they carry no chip).
 */
export function stageOfCells(cells: readonly ICellLike[]): (string | null)[] {
  let current: string | null = null;
  return cells.map(cell => {
    const spec = readCellSpec(cell.tags);
    const magic = cell.cellType === 'code' ? magicStage(cell.source ?? '') : null;
    if (spec.role === 'stage' || magic) {
      current = spec.stage ?? magic;
      return cell.cellType === 'code' ? current : null;
    }
    if (cell.cellType !== 'code' || spec.role !== 'none') {
      return null;
    }
    return current;
  });
}

/** Stage names declared by tags in notebook order, without repeats. */
export function declaredStages(cells: readonly ICellLike[]): string[] {
  const out: string[] = [];
  for (const name of stageOfCells(cells)) {
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
