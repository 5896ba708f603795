/** The k2lab icon (right sidebar tab): a speech bubble with a spark of thought. */
import { LabIcon } from '@jupyterlab/ui-components';

const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <path class="jp-icon3" fill="#616161" d="M4 3h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2h-7l-5 4v-4H4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2zm0 2v10h6v2l2.5-2H20V5H4z"/>
  <path class="jp-icon3" fill="#616161" d="M7 8h2.2v1.6L11 8h2.6l-2.3 2.2L13.8 13h-2.7l-1.9-2-0.0 2H7V8zm8 0h2v5h-2V8z"/>
</svg>`;

export const k2Icon = new LabIcon({ name: 'k2lab:icon', svgstr: svg });
