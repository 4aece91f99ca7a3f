/**
 * What the read-only view of an executed stage notebook shows (stageview.ts): the user's cells and
 * what went wrong, not the run's plumbing. Pure functions over nbformat JSON, tested on their own.
 */
import { INotebookContent } from './api';

/** Generated cells (`metadata.jupyter_pipeline.kind`) that are the user's own or say what the stage is
 * (its parameters are shown as papermill injected them: the run's values, not the defaults). */
const SHOWN = ['header', 'setup', 'user'];
/** The line of the parameters holding the run context (store, run id) the runner injects. */
const RUN_CONTEXT = /^_jp_run = .*$\n?/m;

interface ICell {
  metadata?: { tags?: string[]; jupyter_pipeline?: { kind?: string } };
  outputs?: { output_type?: string }[];
  source?: string | string[];
}

function text(cell: ICell): string {
  return Array.isArray(cell.source) ? cell.source.join('') : cell.source ?? '';
}

function failed(cell: ICell): boolean {
  return (cell.outputs ?? []).some(o => o.output_type === 'error');
}

/** Whether the view shows `cell`: not papermill's banners and injected run context, not the runner's
 * plumbing cells (activating the run, saving outputs...), unless the error is in it. */
export function isShown(cell: ICell): boolean {
  const tags = cell.metadata?.tags ?? [];
  if (tags.includes('papermill-error-cell-tag')) {
    return false; // "An Exception was encountered at In [n]": the error itself is shown, and scrolled to
  }
  if (failed(cell)) {
    return true;
  }
  if (tags.includes('injected-parameters')) {
    return text(cell).replace(RUN_CONTEXT, '').trim() !== ''; // shown without the run context
  }
  const kind = cell.metadata?.jupyter_pipeline?.kind;
  return kind === undefined || SHOWN.includes(kind);
}

/** `content` with only the cells the view shows, how many were hidden, and the index of the failed cell. */
export function readableContent(content: INotebookContent): {
  content: INotebookContent;
  hidden: number;
  errorIndex: number;
} {
  const all = (content.cells ?? []) as ICell[];
  const cells = all
    .filter(isShown)
    .map(c => (c.metadata?.tags?.includes('injected-parameters') ? { ...c, source: text(c).replace(RUN_CONTEXT, '') } : c));
  return {
    content: { ...content, cells },
    hidden: all.length - cells.length,
    errorIndex: cells.findIndex(failed)
  };
}
