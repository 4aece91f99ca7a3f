/**
 * A stage's executed notebook, shown read-only in the main area: rendered from the store's copy
 * in the browser, so nothing is written into the user's folder and no kernel starts.
 */
import { MainAreaWidget } from '@jupyterlab/apputils';
import { IEditorServices } from '@jupyterlab/codeeditor';
import * as nbformat from '@jupyterlab/nbformat';
import { NotebookModel, NotebookPanel, StaticNotebook } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { Toolbar } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';
import { INotebookContent } from './api';
import { readableContent } from './stagecontent';

export interface IStageViewOptions {
  runId: string;
  stage: string;
  content: INotebookContent;
  rendermime: IRenderMimeRegistry;
  editorServices: IEditorServices;
}

/** The main-area id of the view of one stage of one run (one view each). */
export function stageViewId(runId: string, stage: string): string {
  return `jp-pipeline-stage-view-${runId}-${stage}`.replace(/[^A-Za-z0-9_-]/g, '-');
}

/** A read-only, kernel-less view of an executed stage notebook. */
export function createStageView(options: IStageViewOptions): MainAreaWidget<StaticNotebook> {
  const { editorServices } = options;
  const readOnly = { readOnly: true, editable: false };
  const notebook = new StaticNotebook({
    rendermime: options.rendermime,
    contentFactory: new NotebookPanel.ContentFactory({
      editorFactory: editorServices.factoryService.newInlineEditor
    }),
    mimeTypeService: editorServices.mimeTypeService,
    editorConfig: {
      code: { ...StaticNotebook.defaultEditorConfig.code, ...readOnly },
      markdown: { ...StaticNotebook.defaultEditorConfig.markdown, ...readOnly },
      raw: { ...StaticNotebook.defaultEditorConfig.raw, ...readOnly }
    },
    notebookConfig: { ...StaticNotebook.defaultNotebookConfig, windowingMode: 'none' }
  });
  const model = new NotebookModel();
  // The user's cells and the error, not the run's plumbing or papermill's banners (stagecontent.ts).
  const readable = readableContent(options.content);
  // Outputs come from a run, not from this browser: untrusted (no scripts, sanitized HTML).
  model.fromJSON(readable.content as unknown as nbformat.INotebookContent);
  for (let i = 0; i < model.cells.length; i++) {
    model.cells.get(i).trusted = false;
  }
  model.readOnly = true;
  notebook.model = model;
  for (const cell of notebook.widgets) {
    cell.readOnly = true; // the cell's own setting wins over the editor config
  }
  notebook.addClass('jp-pipeline-stage-notebook');

  const note = new Widget();
  note.addClass('jp-pipeline-stage-view-note');
  note.node.textContent =
    'Read-only, as executed: no kernel, nothing saved to your folder.' +
    (readable.hidden ? ` ${readable.hidden} generated cell${readable.hidden === 1 ? '' : 's'} of the runner hidden.` : '');
  note.node.title = `Stage ${options.stage} of run ${options.runId}`;
  // A plain toolbar: the responsive one would fold the note away into its overflow menu.
  const widget = new MainAreaWidget({ content: notebook, toolbar: new Toolbar() });
  widget.toolbar.addItem('note', note);
  widget.id = stageViewId(options.runId, options.stage);
  widget.addClass('jp-pipeline-stage-view');
  widget.title.label = `${options.stage} · ${options.runId}`;
  widget.title.caption = `Executed notebook of stage ${options.stage}, run ${options.runId} (read-only)`;
  widget.title.closable = true;
  widget.disposed.connect(() => model.dispose());
  if (readable.errorIndex >= 0) {
    // A failed stage opens at its error.
    void widget.revealed.then(() =>
      requestAnimationFrame(() => notebook.widgets[readable.errorIndex]?.node.scrollIntoView({ block: 'center' }))
    );
  }
  return widget;
}
