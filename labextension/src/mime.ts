/**
 * The mime extension entry (package.json `jupyterlab.mimeExtension`): registers the trace
 * renderer for notebooks, output areas and files.
 */
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';

import { rendererFactory } from './trace-renderer/widget';

const extension: IRenderMime.IExtension = {
  id: 'k2lab:trace-renderer',
  description: 'Renders k2lab run traces saved in notebooks.',
  rendererFactory,
  rank: 30,
  dataType: 'json'
};

export default extension;
