// The TypeScript fold (src/trace-renderer/fold.ts, compiled to lib/) against the golden traces in
// tests/trace/data/: for every NAME.view.json, the final view and each partial (live) view must
// agree with RunView on what the renderers show: runs and heavy-mode lanes (identity), steps (text,
// done, restarts, usage, calls), calls keyed by (run_id, call_id) with their states, retries,
// errors, totals, the answer, the verify pass (rounds, outcome, phase) and status.
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const data = join(here, '..', '..', 'tests', 'trace', 'data');
const {
  TraceFold,
  callLabel,
  stepTokens,
  retryText,
  budgetsOf,
  contextGauge,
  budgetStopText,
  costText
} = await import(
  pathToFileURL(join(here, '..', 'lib', 'trace-renderer', 'fold.js')).href
);

function events(name) {
  const lines = readFileSync(join(data, `${name}.jsonl`), 'utf-8')
    .split('\n')
    .filter(Boolean);
  return lines.slice(1).map(l => JSON.parse(l)); // the first line is the trace header
}

function fold(evs) {
  const f = new TraceFold();
  for (const ev of evs) f.add(ev);
  return f.runs.map(r => runOf(r));
}

// the fields both folds hold, in the shape of RunView.to_dict()
function runOf(r) {
  const out = {
    run_id: r.run_id,
    lane: r.lane,
    prompt: r.prompt,
    max_steps: r.max_steps,
    status: r.status,
    stop_reason: r.stop_reason,
    error: r.error,
    answer: r.answer,
    steps: r.steps.map(s => ({
      index: s.index,
      reasoning: s.reasoning,
      content: s.content,
      done: s.done,
      restarts: s.restarts,
      usage: s.usage,
      calls: s.calls,
      // RunView's step_tokens (in the view.json) and the TS stepTokens: what "N tokens" says
      tokens: s.tokens !== undefined ? s.tokens : stepTokens(s)
    })),
    calls: r.calls.map(c => ({
      run_id: c.run_id,
      call_id: c.call_id,
      step: c.step,
      name: c.name,
      decision: c.decision,
      status: c.status,
      executed: c.executed,
      reason: c.reason,
      // RunView's call_label (in the view.json) and the TS callLabel: the same words
      label: c.label ?? callLabel(c)
    })),
    retries: r.retries,
    errors: r.errors,
    totals: r.totals,
    budgets: r.budgets,
    last_prompt_tokens: r.last_prompt_tokens,
    context: r.context
  };
  if (r.verify !== undefined) {
    out.verify = r.verify;
  }
  return out;
}

function canon(v) {
  return JSON.stringify(v, (k, x) =>
    x && typeof x === 'object' && !Array.isArray(x)
      ? Object.fromEntries(
          Object.keys(x)
            .sort()
            .map(key => [key, x[key]])
        )
      : x
  );
}

let failed = 0;
let checked = 0;
const names = readdirSync(data)
  .filter(f => f.endsWith('.view.json'))
  .map(f => f.slice(0, -10));
for (const name of names) {
  const exp = JSON.parse(
    readFileSync(join(data, `${name}.view.json`), 'utf-8')
  );
  const evs = events(name);
  const cases = [
    { n: evs.length, view: exp.final },
    ...(exp.partial || []).map(p => ({ n: p.events, view: p.view }))
  ];
  for (const c of cases) {
    checked++;
    const got = canon(fold(evs.slice(0, c.n)));
    const want = canon(c.view.runs.map(r => runOf(r)));
    if (got !== want) {
      failed++;
      console.error(
        `${name} (${c.n} events): TS fold differs from RunView\n  got:  ${got}\n  want: ${want}`
      );
    }
  }
}
// the one wording of a retry, as RunView's retry_text writes it
const r = {
  step: 1,
  attempt: 2,
  max_attempts: 4,
  delay: 0.5,
  reason: 'HTTP 503'
};
if (retryText(r) !== 'attempt 2 of 4 in 0.5 s: HTTP 503') {
  failed++;
  console.error(`retryText: ${retryText(r)}`);
}
// budgets from run.start and their wording, as RunView's budgets_of / context_gauge /
// budget_stop_text write them (tests/trace/test_budgets_view.py checks the same strings)
const b = budgetsOf({
  type: 'run.start',
  wall_time: 60,
  max_total_tokens: 5000,
  max_tokens: 32768,
  context_window: 262144
});
const words = [
  [contextGauge(107479, b.context_window), 'ctx 41% of 262k'],
  [contextGauge(0, b.context_window), ''],
  [budgetStopText('wall_time', b, 300), 'budget: wall time 60 s'],
  [budgetStopText('tokens', b, 300), 'budget: 5000 completion tokens'],
  [budgetStopText('max_steps', b, 300), 'budget: 300 steps'],
  [budgetStopText('completed', b, 300), 'completed'],
  [
    JSON.stringify(
      budgetsOf({ type: 'run.start', wall_time: 'x', max_tokens: 1.5 })
    ),
    '{"wall_time":null,"max_total_tokens":null,"max_tokens":null,"context_window":0,"prices":null}'
  ],
  [
    costText(
      {
        prompt_tokens: 1000000,
        cached_tokens: 400000,
        completion_tokens: 100000
      },
      [0.6, 0.15, 2.5]
    ),
    '≈ $0.6700'
  ],
  [
    costText(
      { prompt_tokens: 5, cached_tokens: 0, completion_tokens: 5 },
      null
    ),
    ''
  ]
];
for (const [got, want] of words) {
  if (got !== want) {
    failed++;
    console.error(
      `budget wording: ${JSON.stringify(got)} != ${JSON.stringify(want)}`
    );
  }
}
// the goldens of heavy mode and the verify pass are there (issue 12)
for (const must of ['heavy', 'heavy_demo', 'verify_corrected']) {
  if (!names.includes(must)) {
    failed++;
    console.error(`golden trace ${must} missing`);
  }
}
if (names.length < 11 || checked < names.length) {
  failed++;
  console.error(`only ${names.length} golden traces found in ${data}`);
}
console.log(
  `trace golden (TS): ${checked} views of ${names.length} traces, ${failed} failed`
);
process.exit(failed ? 1 : 0);
