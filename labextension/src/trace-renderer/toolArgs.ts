/**
 * What to show and edit of a tool call's arguments. The python tool's `{"code": ...}` is edited
 * as code; any other tool's arguments as pretty JSON. Editing rebuilds the JSON text to send.
 */

export interface IEditableArgs {
  /** The text shown in the editor. */
  text: string;
  /** "code" when `text` is the `code` field, "json" when it is the whole arguments object. */
  kind: 'code' | 'json';
  /** Turns the edited text back into the arguments JSON to run; throws on invalid JSON. */
  toArguments(edited: string): string;
}

export function editableArgs(raw: string): IEditableArgs {
  let parsed: any;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return { text: raw, kind: 'json', toArguments: checkedJSON };
  }
  if (
    parsed &&
    typeof parsed === 'object' &&
    !Array.isArray(parsed) &&
    typeof parsed.code === 'string'
  ) {
    return {
      text: parsed.code,
      kind: 'code',
      toArguments: edited => JSON.stringify({ ...parsed, code: edited })
    };
  }
  return {
    text: JSON.stringify(parsed, null, 2),
    kind: 'json',
    toArguments: checkedJSON
  };
}

function checkedJSON(edited: string): string {
  JSON.parse(edited); // throws SyntaxError with a message the card shows
  return edited;
}
