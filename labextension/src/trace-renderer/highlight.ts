/**
 * Python syntax highlighting for the saved-trace and panel cards, in the notebook widget's
 * classes: pygments' short token classes (`k`, `s2`, `c1`, `mi`, `nb`, `nf`, `o`, ...) under
 * `.k2lab-hl`, styled by the shared stylesheet (k2lab/trace/trace_view.css), so a call's code
 * reads the same in the live widget, the HTML fallback (pygments) and here.
 *
 * A small tokenizer that follows pygments' PythonLexer where the stylesheet shows a colour
 * (tests/trace/test_highlight_parity.py compares them character by character on the golden
 * traces' and the demo's code); everything else is plain text. Pure: no DOM except
 * `highlightPython`, which builds text nodes and spans (never innerHTML).
 */

export type Token = [cls: string | null, text: string];

const KEYWORDS = new Set(
  (
    'assert async await break continue del elif else except finally for global if lambda ' +
    'pass raise nonlocal return try while yield as with def class'
  ).split(' ')
);
const CONSTANTS = new Set(['True', 'False', 'None']);
const OP_WORDS = new Set(['in', 'is', 'and', 'or', 'not']);
const NAMESPACE = new Set(['import', 'from']);
const BUILTINS = new Set(
  (
    '__import__ abs aiter all any bin bool bytearray breakpoint bytes callable chr classmethod ' +
    'compile complex delattr dict dir divmod enumerate eval filter float format frozendict ' +
    'frozenset getattr globals hasattr hash hex id input int isinstance issubclass iter len ' +
    'list locals map max memoryview min next object oct open ord pow print property range ' +
    'repr reversed round sentinel set setattr slice sorted staticmethod str sum super tuple ' +
    'type vars zip'
  ).split(' ')
);
const PSEUDO = new Set(['self', 'Ellipsis', 'NotImplemented', 'cls']);

const NAME = /[A-Za-z_\u00c0-\uffff][\w\u00c0-\uffff]*/y;
const NUMBER =
  /(?:0[oO](?:_?[0-7])+|0[bB](?:_?[01])+|0[xX](?:_?[a-fA-F0-9])+)|(\d(?:_?\d)*\.(?:\d(?:_?\d)*)?|(?:\d(?:_?\d)*)?\.\d(?:_?\d)*)([eE][+-]?\d(?:_?\d)*)?|(\d(?:_?\d)*[eE][+-]?\d(?:_?\d)*j?)|(\d(?:_?\d)*)/y;
const STRING_START = /([rRbBuUfFtT]{0,2})("""|'''|"|')/y;
const OPERATOR = /!=|==|<<|>>|:=|[-~+/*%=<>&^|.@]/y;
const ESCAPE =
  /\\(?:[\\abfnrtv"']|\n|N\{.*?\}|u[a-fA-F0-9]{4}|U[a-fA-F0-9]{8}|x[a-fA-F0-9]{2}|[0-7]{1,3})/y;

function at(re: RegExp, code: string, i: number): RegExpExecArray | null {
  re.lastIndex = i;
  return re.exec(code);
}

/** Pygments-like tokens of Python code (consecutive pieces of one class are merged). */
export function pythonTokens(code: string): Token[] {
  const out: Token[] = [];
  const push = (cls: string | null, text: string): void => {
    if (!text) {
      return;
    }
    const last = out[out.length - 1];
    if (last && last[0] === cls) {
      last[1] += text;
    } else {
      out.push([cls, text]);
    }
  };
  lex(code, 0, code.length, push, false);
  return out;
}

type Push = (cls: string | null, text: string) => void;

/**
 * Code from `i` to `end`; inside an f-string's braces (`inBraces`) it stops at the closing `}`
 * or at a top-level `!` / `:` (the conversion and format spec) and returns where it stopped.
 */
function lex(
  code: string,
  i: number,
  end: number,
  push: Push,
  inBraces: boolean
): number {
  let prev = ''; // the previous significant word: a name after def / class is a definition
  let depth = 0;
  while (i < end) {
    const c = code[i];
    if (
      inBraces &&
      depth === 0 &&
      (c === '}' || c === ':' || (c === '!' && code[i + 1] !== '='))
    ) {
      return i;
    }
    if (c === '#') {
      const nl = code.indexOf('\n', i);
      const stop = nl < 0 || nl > end ? end : nl;
      push('c1', code.slice(i, stop));
      i = stop;
      continue;
    }
    const str = at(STRING_START, code, i);
    if (
      str &&
      (str[1] === '' ||
        /^(?:[rRuUbBfFtT]|[rR][bBfFtT]|[bBfFtT][rR])$/.test(str[1]))
    ) {
      i = lexString(code, i, end, str[1], str[2], push);
      prev = '';
      continue;
    }
    if (/[A-Za-z_\u00c0-\uffff]/.test(c)) {
      const m = at(NAME, code, i)!;
      const w = m[0];
      const afterDot = code[i - 1] === '.';
      let cls: string | null = null;
      if (prev === 'def' || prev === 'class') {
        cls =
          /^__\w+__$/.test(w) && prev === 'def'
            ? null
            : prev === 'def'
              ? 'nf'
              : 'nc';
      } else if (CONSTANTS.has(w)) {
        cls = 'kc';
      } else if (OP_WORDS.has(w)) {
        cls = 'ow';
      } else if (NAMESPACE.has(w)) {
        cls = 'kn';
      } else if (KEYWORDS.has(w)) {
        cls = 'k';
      } else if (!afterDot && BUILTINS.has(w)) {
        cls = 'nb';
      } else if (!afterDot && PSEUDO.has(w)) {
        cls = 'bp';
      }
      push(cls, w);
      prev = w;
      i += w.length;
      continue;
    }
    const num = /[0-9.]/.test(c) ? at(NUMBER, code, i) : null;
    if (num && num[0] !== '.' && !/[\w]/.test(code[i - 1] ?? '')) {
      push(
        num[4] !== undefined
          ? 'mi'
          : num[1] !== undefined || num[3] !== undefined
            ? 'mf'
            : null,
        num[0]
      );
      i += num[0].length;
      prev = '';
      continue;
    }
    if (
      c === '@' &&
      /[A-Za-z_]/.test(code[i + 1] ?? '') &&
      /(^|\n)[ \t]*$/.test(code.slice(0, i))
    ) {
      const m = at(NAME, code, i + 1)!; // a decorator: pygments' Name.Decorator, plain here
      let j = i + 1 + m[0].length;
      while (code[j] === '.' && at(NAME, code, j + 1)) {
        j += 1 + at(NAME, code, j + 1)![0].length;
      }
      push(null, code.slice(i, j));
      i = j;
      continue;
    }
    const op = at(OPERATOR, code, i);
    if (op) {
      push('o', op[0]);
      i += op[0].length;
      continue;
    }
    if ('([{'.includes(c)) {
      depth++;
    } else if (')]}'.includes(c)) {
      depth--;
    }
    if (!/\s/.test(c)) {
      prev = '';
    }
    push(null, c);
    i++;
  }
  return i;
}

/** A string literal from its prefix; returns the index after it. */
function lexString(
  code: string,
  i: number,
  end: number,
  prefix: string,
  quote: string,
  push: Push
): number {
  const p = prefix.toLowerCase();
  const raw = p.includes('r');
  const fmt = p.includes('f') || p.includes('t');
  const cls = quote[0] === '"' ? 's2' : 's1';
  push('sa', prefix);
  push(cls, quote);
  i += prefix.length + quote.length;
  while (i < end) {
    if (code.startsWith(quote, i)) {
      push(cls, quote);
      return i + quote.length;
    }
    const c = code[i];
    if (c === '\n' && quote.length === 1) {
      return i; // an unterminated one-line string ends at the line
    }
    if (!raw && c === '\\') {
      const esc = at(ESCAPE, code, i);
      if (esc) {
        push(null, esc[0]);
        i += esc[0].length;
        continue;
      }
    }
    if (raw && c === '\\' && i + 1 < end) {
      push(cls, code.slice(i, i + 2));
      i += 2;
      continue;
    }
    if (fmt && (code.startsWith('{{', i) || code.startsWith('}}', i))) {
      push(null, code.slice(i, i + 2)); // pygments' String.Escape: plain
      i += 2;
      continue;
    }
    if (fmt && c === '{') {
      i = lexField(code, i, end, push);
      continue;
    }
    push(cls, c);
    i++;
  }
  return i;
}

/** An f-string's replacement field `{expr!r:spec}`, braces and spec as pygments colours them. */
function lexField(code: string, i: number, end: number, push: Push): number {
  push('si', '{');
  i = lex(code, i + 1, end, push, true);
  if (code[i] === '!' || code[i] === ':') {
    const conv = /![rsa]?:?|:/y;
    conv.lastIndex = i;
    const m = conv.exec(code);
    const head = m ? m[0] : code[i];
    push('si', head);
    i += head.length;
    if (head.endsWith(':')) {
      while (i < end && code[i] !== '}') {
        if (code[i] === '{') {
          i = lexField(code, i, end, push); // a nested field in the spec
        } else {
          push('s2', code[i]);
          i++;
        }
      }
    }
  }
  if (code[i] === '}') {
    push('si', '}');
    i++;
  }
  return i;
}

/** Fills `pre` with the highlighted code (class `k2lab-hl`; spans for coloured tokens). */
export function highlightPython(pre: HTMLElement, code: string): void {
  pre.classList.add('k2lab-hl');
  pre.replaceChildren();
  for (const [cls, text] of pythonTokens(code)) {
    if (cls) {
      const span = document.createElement('span');
      span.className = cls;
      span.textContent = text;
      pre.append(span);
    } else {
      pre.append(document.createTextNode(text));
    }
  }
}

/** A code block of a card: highlighted when it is Python (a python call's `code`), else text. */
export function codePre(
  text: string,
  python: boolean,
  cls = 'k2lab-code'
): HTMLElement {
  const pre = document.createElement('pre');
  pre.className = cls;
  if (python) {
    highlightPython(pre, text);
  } else {
    pre.textContent = text;
  }
  return pre;
}
