/**
 * The k2lab JupyterLab extension: the side panel plugin (command `k2lab:open-panel`, right
 * sidebar, settings), `insertCell.ts` (the notebook widget's "Insert as cell"), `liveTrace.ts`
 * and `kernelNotebookTools.ts` (`%k2 --notebook-tools`: the kernel's notebook tool requests). The trace
 * mimetype renderer is the separate mime extension in `mime.ts`.
 * Activation does not await the server, so JupyterLab starts as fast without it.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { k2Icon } from './icon';
import { insertCellPlugin } from './insertCell';
import { kernelNotebookToolsPlugin } from './kernelNotebookTools';
import { liveTracePlugin } from './liveTrace';
import { K2Panel } from './panel/panel';
import { IPanelSettings, readSettings } from './panel/settings';

export namespace CommandIDs {
  export const openPanel = 'k2lab:open-panel';
}

const PLUGIN_ID = 'k2lab:plugin';

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'k2lab side panel: streamed reasoning and approvable tool calls.',
  autoStart: true,
  requires: [INotebookTracker, IRenderMimeRegistry],
  optional: [ISettingRegistry, ICommandPalette, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    rendermime: IRenderMimeRegistry,
    settingRegistry: ISettingRegistry | null,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null
  ) => {
    let settings: IPanelSettings = readSettings(null);
    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(loaded => {
          settings = readSettings(loaded);
          loaded.changed.connect(() => (settings = readSettings(loaded)));
        })
        .catch(reason =>
          console.error('k2lab: could not load settings', reason)
        );
    }
    const panel = new K2Panel({
      tracker,
      rendermime,
      settings: () => settings
    });
    panel.title.icon = k2Icon;
    app.shell.add(panel, 'right', { rank: 600 });
    restorer?.add(panel, 'k2lab-panel');

    app.commands.addCommand(CommandIDs.openPanel, {
      label: 'Open k2lab Panel',
      caption:
        'Open the k2lab side panel (a thinking model with approvable tool calls)',
      icon: k2Icon,
      execute: () => {
        app.shell.activateById(panel.id);
        panel.focusPrompt();
      }
    });
    palette?.addItem({ command: CommandIDs.openPanel, category: 'k2lab' });
  }
};

export default [
  plugin,
  insertCellPlugin,
  liveTracePlugin,
  kernelNotebookToolsPlugin
];
