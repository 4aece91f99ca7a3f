/**
 * jupyter-pipeline's JupyterLab extension: the Pipeline sidebar, the stage editor, stage chips,
 * and the "Publish as pipeline" command (toolbar, palette, context menu).
 */
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, showErrorMessage } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';
import * as api from './api';
import { updateChips } from './chips';
import { DEFAULT_SETTINGS, IPipelineSettings, PipelineModel } from './model';
import { showPublishDialog } from './publish';
import { PipelineSidebar } from './sidebar';
import { ICellSpec, writeCellSpec } from './tags';

const PLUGIN_ID = 'jupyter-pipeline:plugin';

/** Command ids, all in the `jupyter-pipeline:` namespace. */
export namespace CommandIDs {
  export const publish = 'jupyter-pipeline:publish';
  export const validate = 'jupyter-pipeline:validate';
  export const showSidebar = 'jupyter-pipeline:show-sidebar';
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
  description: 'Notebook-to-pipeline: stage editor, pipeline sidebar and publishing.',
  autoStart: true,
  requires: [INotebookTracker, IDocumentManager],
  optional: [ILabShell, ICommandPalette, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    docManager: IDocumentManager,
    labShell: ILabShell | null,
    palette: ICommandPalette | null,
    registry: ISettingRegistry | null
  ) => {
    const model = new PipelineModel();
    const { commands, shell } = app;

    const currentPanel = (): NotebookPanel | null => tracker.currentWidget;

    const selectCell = (index: number) => {
      const panel = model.panel;
      if (!panel) {
        return;
      }
      const nb = panel.content;
      if (index < 0 || index >= nb.widgets.length) {
        return;
      }
      nb.activeCellIndex = index;
      nb.deselectAll();
      void nb.scrollToCell(nb.widgets[index], 'center');
      shell.activateById(panel.id);
    };

    const applySpec = (spec: ICellSpec) => {
      const cell = model.panel?.content.activeCell;
      if (!cell) {
        return;
      }
      const tags = writeCellSpec(cell.model.getMetadata('tags') as string[] | undefined, spec);
      if (tags.length) {
        cell.model.setMetadata('tags', tags);
      } else {
        cell.model.deleteMetadata('tags');
      }
    };

    const openStageNotebook = async (run: api.IRunRecord, stage: string) => {
      try {
        const content = await api.getStageNotebook(run.run_id, stage);
        const base = PathExt.dirname(model.path ?? '');
        const dirs = ['pipeline-runs', `pipeline-runs/${run.run_id}`].map(d =>
          base ? `${base}/${d}` : d
        );
        for (const dir of dirs) {
          await app.serviceManager.contents.save(dir, { type: 'directory' });
        }
        const path = `${dirs[1]}/${stage}.ipynb`;
        await app.serviceManager.contents.save(path, {
          type: 'notebook',
          format: 'json',
          content
        });
        docManager.openOrReveal(path);
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
        const meta = (panel.model?.getMetadata('jupyter_pipeline') ?? {}) as Record<string, any>;
        const request = await showPublishDialog({
          path: panel.context.path,
          parameters: model.pipeline?.parameters ?? [],
          defaultTarget: model.settings.defaultTarget,
          kfpHost: model.kfpHost(),
          experiment: String(meta.experiment ?? model.pipeline?.name ?? '')
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
        if (kfpHost && request.target === 'kfp') {
          request.kfp_host = kfpHost;
        }
        // The notebook is run from disk: save whatever was typed while the dialog was open.
        if (panel.model?.dirty) {
          await panel.context.save();
        }
        const { run_id } = await api.startRun(request);
        if (run_id) {
          model.expanded.add(run_id); // a sweep's variants appear in the runs list as they start
        }
        shell.activateById(sidebar.id);
        await model.refreshRuns();
      } catch (error) {
        void showErrorMessage('Publish as pipeline', error as Error);
      }
    };

    const sidebar = new PipelineSidebar(model, {
      selectCell,
      applySpec,
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
    commands.addCommand(CommandIDs.openStageNotebook, {
      label: 'Open executed stage notebook',
      execute: async args => {
        const runId = String(args['runId']);
        const run = model.runs.find(r => r.run_id === runId) ?? (await api.getRun(runId));
        await openStageNotebook(run, String(args['stage']));
      }
    });
    commands.addCommand(CommandIDs.cancelRun, {
      label: 'Cancel pipeline run',
      execute: args => model.cancel(String(args['runId']))
    });
    if (palette) {
      for (const command of [CommandIDs.publish, CommandIDs.validate, CommandIDs.showSidebar]) {
        palette.addItem({ command, category: 'Pipeline' });
      }
    }

    // Follow the active notebook and its active cell.
    const refreshChips = () => {
      if (model.panel) {
        updateChips(model.panel, model.cells());
      }
    };
    model.changed.connect(refreshChips);
    tracker.currentChanged.connect((_, panel) => {
      model.setPanel(panel);
      if (panel) {
        void panel.context.ready.then(refreshChips);
      }
    });
    tracker.activeCellChanged.connect(() => model.notify());
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
