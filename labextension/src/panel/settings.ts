/**
 * The panel's settings (schema/plugin.json, edited in JupyterLab's Settings Editor) and the
 * per-session overrides they become. The API key is deliberately not among them.
 */
import { ISettingRegistry } from '@jupyterlab/settingregistry';

export interface IPanelSettings {
  model: string;
  preset: string;
  baseUrl: string;
  /** '' = the server's setting (`c.K2Lab.approve` / $K2LAB_APPROVE, ask by default). */
  approve: '' | 'ask' | 'auto' | 'never';
  maxSteps: number;
  maxTotalTokens: number;
  wallTime: number;
  toolTimeout: number;
  contextMaxChars: number;
  /** Run options of new sessions (the panel's "Run options & tools" starts from these). */
  verify: boolean;
  verifyRounds: number;
  heavy: number;
  heavyConcurrency: number;
  dataPaths: string[];
}

export const DEFAULT_SETTINGS: IPanelSettings = {
  model: '',
  preset: '',
  baseUrl: '',
  approve: '',
  maxSteps: 0,
  maxTotalTokens: 0,
  wallTime: 0,
  toolTimeout: 0,
  contextMaxChars: 20000,
  verify: false,
  verifyRounds: 1,
  heavy: 0,
  heavyConcurrency: 0,
  dataPaths: []
};

export function readSettings(
  s: ISettingRegistry.ISettings | null
): IPanelSettings {
  if (!s) {
    return { ...DEFAULT_SETTINGS };
  }
  return { ...DEFAULT_SETTINGS, ...(s.composite as any) };
}

/** The `settings` of `POST sessions`: only what the user chose (empty/0 = server default). */
export function sessionSettings(s: IPanelSettings): { [key: string]: unknown } {
  const out: { [key: string]: unknown } = {};
  if (['ask', 'auto', 'never'].includes(s.approve)) {
    out.approve = s.approve;
  }
  if (s.model.trim()) {
    out.model = s.model.trim();
  }
  if (s.preset === 'custom') {
    if (s.baseUrl.trim()) {
      out.base_url = s.baseUrl.trim();
    }
  } else if (s.preset) {
    out.preset = s.preset;
  }
  if (s.maxSteps > 0) {
    out.max_steps = Math.floor(s.maxSteps);
  }
  if (s.maxTotalTokens > 0) {
    out.max_total_tokens = Math.floor(s.maxTotalTokens);
  }
  if (s.wallTime > 0) {
    out.wall_time = Number(s.wallTime);
  }
  if (s.toolTimeout > 0) {
    out.tool_timeout = Number(s.toolTimeout);
  }
  return out;
}
