/**
 * jupyter-pipeline's JupyterLab extension: a stage bar on every code cell (chip, "Add stage", the
 * stage form), the Pipeline sidebar (graph, problems, runs), read-only views of executed stage
 * notebooks, and the "Publish as pipeline" command (toolbar, palette, context menu).
 */
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget, showErrorMessage } from '@jupyterlab/apputils';
import { IEditorServices } from '@jupyterlab/codeeditor';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';
import * as api from './api';
import { StageBars } from './cellbar';
import { DEFAULT_SETTINGS, IPipelineSettings, PipelineModel } from './model';
import { showPublishDialog, showPublishRefusal } from './publish';
import { createRunActions } from './runcommands';
import { PipelineSidebar } from './sidebar';
import { createStageView, stageViewId } from './stageview';

const PLUGIN_ID = 'jupyter-pipeline:plugin';

/** Command ids, all in the `jupyter-pipeline:` namespace. */
export namespace CommandIDs {
  export const publish = 'jupyter-pipeline:publish';
  export const validate = 'jupyter-pipeline:validate';
  export const showSidebar = 'jupyter-pipeline:show-sidebar';
  export const editStage = 'jupyter-pipeline:edit-cell-stage';
  export const openStageNotebook = 'jupyter-pipeline:open-stage-notebook';
  export const cancelRun = 'jupyter-pipeline:cancel-run';
}

export const pipelineIcon = new LabIcon({
  name: 'jupyter-pipeline:pipeline',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">' +
    '<g class="jp-icon3" fill="#616161">' +
    '<rect x="2" y="3" width="8" height="5" rx="1"/><rect x="14" y="3" width="8" height="5" rx="1"/>' +
    '<rect x="8" y="16" width="8" height="5" rx="1"/>' +
    '<path d="M6 8v3.5h12V8h-1.5v2H7.5V8zM11.25 11.5h1.5V16h-1.5z"/></g></svg>'
});

function readSettings(settings: ISettingRegistry.ISettings | null): IPipelineSettings {
  if (!settings) {
    return { ...DEFAULT_SETTINGS };
  }
  const c = settings.composite as Partial<IPipelineSettings>;
  return { ...DEFAULT_SETTINGS, ...c };
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Notebook-to-pipeline: stages on the cells, pipeline sidebar and publishing.',
  autoStart: true,
  requires: [INotebookTracker, IRenderMimeRegistry, IEditorServices],
  optional: [ILabShell, ICommandPalette, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    rendermime: IRenderMimeRegistry,
    editorServices: IEditorServices,
    labShell: ILabShell | null,
    palette: ICommandPalette | null,
    registry: ISettingRegistry | null
  ) => {
    const model = new PipelineModel();
    const { commands, shell } = app;
    const bars = new WeakMap<NotebookPanel, StageBars>();

    const currentPanel = (): NotebookPanel | null => tracker.currentWidget;
    const defaultImage = () => model.settings.defaultImage || String(model.serverConfig.default_image ?? '');

    /** Make cell `index` of the sidebar's notebook the active one, in command mode, in view. */
    const selectCell = (index: number) => {
      const panel = model.panel;
      if (!panel) {
        return;
      }
      const nb = panel.content;
      if (index < 0 || index >= nb.widgets.length) {
        return;
      }
      shell.activateById(panel.id);
      nb.activeCellIndex = index;
      nb.deselectAll();
      // Not scrollToCell: it activates the cell, which puts its editor in edit mode.
      void nb.scrollToItem(index, 'center').catch(() => undefined);
      nb.mode = 'command';
      nb.node.focus();
    };

    /** Open an included notebook (relative to the sidebar's notebook) with cell `index` active and in view. */
    const openNotebookCell = async (notebook: string, index: number) => {
      const base = model.panel?.context.path ?? '';
      const folder = base.includes('/') ? base.slice(0, base.lastIndexOf('/') + 1) : '';
      const parts: string[] = [];
      for (const part of (folder + notebook).split('/')) {
        if (part === '..') {
          parts.pop();
        } else if (part && part !== '.') {
          parts.push(part);
        }
      }
      const widget = (await commands.execute('docmanager:open', { path: parts.join('/') })) as NotebookPanel;
      if (!widget || !('content' in widget)) {
        return;
      }
      await widget.context.ready;
      await widget.revealed;
      const nb = widget.content;
      if (index >= 0 && index < nb.widgets.length) {
        nb.activeCellIndex = index;
        nb.deselectAll();
        void nb.scrollToItem(index, 'center').catch(() => undefined);
        nb.mode = 'command';
      }
    };

    const showProblems = () => {
      shell.activateById(sidebar.id);
      requestAnimationFrame(() =>
        sidebar.node.querySelector('.jp-pipeline-section-problems')?.scrollIntoView({ block: 'start' })
      );
    };

    const views = new Map<string, MainAreaWidget>();
    const openStageNotebook = async (runId: string, stage: string) => {
      const id = stageViewId(runId, stage);
      const open = views.get(id);
      if (open && !open.isDisposed) {
        shell.activateById(id);
        return;
      }
      try {
        const content = await api.getStageNotebook(runId, stage);
        const view = createStageView({ runId, stage, content, rendermime, editorServices });
        views.set(id, view);
        view.disposed.connect(() => views.delete(id));
        // Beside the notebook the run belongs to; the sidebar stays on that notebook.
        const ref = model.panel && !model.panel.isDisposed ? model.panel.id : undefined;
        shell.add(view, 'main', ref ? { ref, mode: 'split-right' } : undefined);
        shell.activateById(id);
      } catch (error) {
        void showErrorMessage(`Cannot open the notebook of stage ${stage}`, error as Error);
      }
    };

    const publish = async () => {
      const panel = model.panel ?? currentPanel();
      if (!panel) {
        return;
      }
      model.setPanel(panel);
      try {
        await panel.context.ready;
        if (panel.model?.dirty || model.stale || !model.pipeline) {
          await panel.context.save();
          await model.validate();
        }
        const problems = model.pipeline?.problems ?? [];
        const errors = problems.filter(p => p.severity === 'error');
        if (errors.length) {
          if (await showPublishRefusal(errors, selectCell)) {
            showProblems();
          }
          return;
        }
        const meta = (panel.model?.getMetadata('jupyter_pipeline') ?? {}) as Record<string, any>;
        // The server says what Kubeflow will get; without that, what this browser knows.
        const fallbackImage = String(
          meta.image || model.settings.defaultImage || model.serverConfig.default_image || ''
        );
        const kubeflow =
          model.pipeline?.kubeflow ??
          (fallbackImage
            ? {
                image: fallbackImage,
                image_source: meta.image ? 'notebook' : model.settings.defaultImage ? 'your settings' : 'server',
                files: [],
                problems: []
              }
            : null);
        if (!model.serverConfig.targets) {
          await model.loadConfig(); // the target list comes from the server
        }
        const request = await showPublishDialog({
          path: panel.context.path,
          parameters: model.pipeline?.parameters ?? [],
          problems,
          defaultTarget: model.settings.defaultTarget,
          targets: model.targets(),
          kfpHost: model.kfpHost(),
          experiment: String(meta.experiment ?? model.pipeline?.name ?? ''),
          kubeflow,
          openSettings: () => void commands.execute('settingeditor:open', { query: 'Pipeline' })
        });
        if (!request) {
          return;
        }
        const { storeUrl, defaultImage, kfpHost } = model.settings;
        if (storeUrl) {
          request.store = storeUrl;
        }
        if (defaultImage) {
          request.image = defaultImage;
        }
        const chosen = model.targets().find(t => t.name === request.target);
        if (kfpHost && chosen?.needs_kfp_host) {
          request.kfp_host = kfpHost;
        }
        // The notebook is run from disk: save whatever was typed while the dialog was open.
        if (panel.model?.dirty) {
          await panel.context.save();
        }
        const { run_id } = await api.startRun(request);
        if (run_id) {
          runs.watcher.watch(run_id); // a notification when it ends
          model.expanded.add(run_id); // a sweep's variants appear in the runs list as they start
          model.focusRun = run_id;
        }
        shell.activateById(sidebar.id);
        await model.refreshRuns();
      } catch (error) {
        void showErrorMessage('Publish as pipeline', error as Error);
      }
    };

    const runs = createRunActions(app, model, runId => {
      shell.activateById(sidebar.id);
      model.expanded.add(runId);
      model.focusRun = runId;
      void model.refreshRuns();
    });
    const sidebar = new PipelineSidebar(model, {
      runActions: runs.actions,
      selectCell,
      openNotebookCell: (notebook, index) => void openNotebookCell(notebook, index),
      publish: () => void commands.execute(CommandIDs.publish),
      openStageNotebook: (run, stage) =>
        void commands.execute(CommandIDs.openStageNotebook, { runId: run.run_id, stage })
    });
    sidebar.title.icon = pipelineIcon;
    sidebar.title.caption = 'Pipeline';
    sidebar.title.label = labShell ? '' : 'Pipeline';
    shell.add(sidebar, 'left', { rank: 600 });

    commands.addCommand(CommandIDs.publish, {
      label: 'Publish as pipeline',
      caption: 'Save the notebook and run it as a pipeline',
      icon: args => (args['toolbar'] ? pipelineIcon : undefined),
      isEnabled: () => !!(model.panel ?? currentPanel()),
      execute: () => publish()
    });
    commands.addCommand(CommandIDs.validate, {
      label: 'Validate pipeline',
      caption: 'Check the active notebook as a pipeline',
      isEnabled: () => !!model.panel,
      execute: () => model.validate()
    });
    commands.addCommand(CommandIDs.showSidebar, {
      label: 'Show pipeline sidebar',
      execute: () => shell.activateById(sidebar.id)
    });
    commands.addCommand(CommandIDs.editStage, {
      label: 'Edit stage of cell',
      caption: 'Make the active code cell a stage, or edit its stage (S in command mode)',
      isEnabled: () => tracker.activeCell?.model.type === 'code',
      execute: () => {
        const panel = currentPanel();
        const cell = tracker.activeCell;
        if (panel && cell) {
          bars.get(panel)?.open(cell, 'auto');
        }
      }
    });
    app.commands.addKeyBinding({
      command: CommandIDs.editStage,
      keys: ['S'],
      selector: '.jp-Notebook.jp-mod-commandMode:not(.jp-mod-readWrite) :focus'
    });
    app.contextMenu.addItem({ command: CommandIDs.editStage, selector: '.jp-Notebook .jp-CodeCell', rank: 89 });
    commands.addCommand(CommandIDs.openStageNotebook, {
      label: 'Open executed stage notebook (read-only)',
      execute: args => openStageNotebook(String(args['runId']), String(args['stage']))
    });
    commands.addCommand(CommandIDs.cancelRun, {
      label: 'Cancel pipeline run',
      execute: args => model.cancel(String(args['runId']))
    });
    if (palette) {
      for (const command of [CommandIDs.publish, CommandIDs.validate, CommandIDs.showSidebar, CommandIDs.editStage]) {
        palette.addItem({ command, category: 'Pipeline' });
      }
    }

    // A stage bar on every code cell of every open notebook.
    const addBars = (panel: NotebookPanel) => {
      if (!bars.has(panel)) {
        bars.set(
          panel,
          new StageBars(panel, {
            stages: () => (model.panel === panel ? model.stageNames() : []),
            defaultImage,
            wholeNotebookStage: () =>
              model.panel === panel
                ? (model.pipeline?.problems.find(p => p.code === 'whole-notebook')?.stage ?? null)
                : null,
            onApplied: () => {
              if (model.panel === panel) {
                model.scheduleValidate();
              }
            }
          })
        );
      }
    };
    tracker.forEach(addBars);
    tracker.widgetAdded.connect((_, panel) => addBars(panel));
    model.changed.connect(() => {
      if (model.panel) {
        bars.get(model.panel)?.schedule();
      }
    });

    // The sidebar follows the active notebook; other widgets (a stage view) leave it where it is.
    tracker.currentChanged.connect((_, panel) => model.setPanel(panel));
    model.setPanel(tracker.currentWidget);

    if (registry) {
      void registry
        .load(PLUGIN_ID)
        .then(settings => {
          model.settings = readSettings(settings);
          settings.changed.connect(() => {
            model.settings = readSettings(settings);
            model.notify();
          });
          model.notify();
        })
        .catch(reason => console.warn('jupyter-pipeline: settings not loaded', reason));
    }
    void model.loadConfig();
  }
};

export default plugin;
