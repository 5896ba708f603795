// The k2lab live trace view (anywidget ES module, hand-written, no build step).
//
// Python owns the state and sends it as {kind: "snapshot"} or coalesced {kind: "patch"} custom
// messages; this module keeps a copy, renders it keyed by step and call (so streaming text is
// appended, open <details> stay open and an editor being typed in is not rebuilt), and sends
// button presses back as {action, call_id, code?, feedback?}. HTML pieces named *_html come from
// Python, already escaped/sanitised (highlighted code, Markdown without raw HTML, sandboxed
// iframes); everything else goes in as text. DOM structure and classes: static/README.md.

const COLLAPSE_LINES = 25;
const VERIFY_CLASS = { verified: "k2lab-verified", corrected: "k2lab-corrected", unverified: "k2lab-unverified" };

function count(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function h(tag, cls, text) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (text !== undefined && text !== null) el.textContent = String(text);
  return el;
}

function btn(label, cls, onClick, title) {
  const b = h("button", "k2lab-btn " + cls, label);
  b.type = "button";
  if (title) b.title = title;
  b.addEventListener("click", (ev) => {
    ev.preventDefault();
    ev.stopPropagation();
    onClick();
  });
  return b;
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return "";
  return s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(1)} s`;
}

function outputBlock(text, cls) {
  const lines = text.split("\n");
  const pre = h("pre", cls, text);
  if (lines.length <= COLLAPSE_LINES) return pre;
  const wrap = h("div", "k2lab-collapsed");
  wrap.appendChild(h("pre", cls, lines.slice(0, 8).join("\n")));
  const more = h("details", "k2lab-more");
  more.appendChild(h("summary", null, `show all ${lines.length} lines`));
  more.appendChild(pre);
  wrap.appendChild(more);
  return wrap;
}

// -- remote content: loads only on a click ------------------------------------------------------
// Python replaces every remote image by a placeholder (span.k2lab-remote[data-k2lab-url], the URL
// shown as a link) and lists what an HTML output referred to under its iframe
// (div.k2lab-remote-note); here they get their Load buttons. Nothing is fetched before the click.

function remoteUrl(raw) {
  try {
    const u = new URL(raw || "", document.baseURI);
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch (e) {
    return null;
  }
}

function armRemote(container) {
  for (const ph of container.querySelectorAll(".k2lab-remote[data-k2lab-url]:not([data-k2lab-armed])")) {
    ph.dataset.k2labArmed = "1";
    if (remoteUrl(ph.dataset.k2labUrl)) ph.append(" ", h("button", "k2lab-btn k2lab-remote-load", "Load image"));
  }
  for (const note of container.querySelectorAll(".k2lab-remote-note:not([data-k2lab-armed])")) {
    note.dataset.k2labArmed = "1";
    if (Number(note.dataset.k2labImages || 0) > 0) note.append(" ", h("button", "k2lab-btn k2lab-remote-load-frame", "Load images"));
  }
}

function loadImage(ph) {
  const url = remoteUrl(ph.dataset.k2labUrl);
  if (!url) return;
  const img = h("img", "k2lab-image k2lab-remote-image");
  img.alt = ph.dataset.k2labAlt || "";
  img.referrerPolicy = "no-referrer";
  img.src = url;
  ph.replaceWith(img);
}

// the images of a sandboxed HTML output: the iframe's document again, with its placeholders made
// images and its Content-Security-Policy opened to exactly their origins
function loadFrameImages(note) {
  const frame = note.previousElementSibling;
  if (!frame || !frame.matches("iframe.k2lab-html")) return;
  const doc = new DOMParser().parseFromString(frame.srcdoc, "text/html"); // inert: loads nothing
  const origins = new Set();
  for (const ph of doc.querySelectorAll(".k2lab-remote[data-k2lab-url]")) {
    const url = remoteUrl(ph.dataset.k2labUrl);
    if (!url || new URL(url).origin === "null") continue;
    origins.add(new URL(url).origin);
    const img = doc.createElement("img");
    img.src = url;
    img.alt = ph.dataset.k2labAlt || "";
    ph.replaceWith(img);
  }
  const csp = doc.querySelector('meta[http-equiv="Content-Security-Policy"]');
  if (!csp || !origins.size) return;
  csp.content = csp.content.replace("img-src data:", "img-src data: " + [...origins].join(" "));
  frame.srcdoc = "<!DOCTYPE html>" + doc.documentElement.outerHTML;
  note.querySelector(".k2lab-remote-load-frame")?.remove();
}

function onRemoteClick(ev) {
  const b = ev.target instanceof Element ? ev.target.closest("button") : null;
  if (!b) return;
  if (b.classList.contains("k2lab-remote-load")) {
    ev.preventDefault();
    ev.stopPropagation();
    loadImage(b.closest(".k2lab-remote"));
  } else if (b.classList.contains("k2lab-remote-load-frame")) {
    ev.preventDefault();
    ev.stopPropagation();
    loadFrameImages(b.closest(".k2lab-remote-note"));
  }
}

function render({ model, el }) {
  const st = { head: null, steps: new Map(), cards: new Map(), order: [], lanes: new Map() };
  const laneOpen = new Map(); // lane -> whether the person opened its details
  const ui = new Map(); // call_id -> {mode: "edit"|"reject"|"fork"|null, text, feedback}
  const stepEls = new Map();
  const cardEls = new Map();
  const userToggled = new Set();

  const root = h("div", "k2lab-trace k2lab-live");
  const headEl = h("div", "k2lab-head");
  const noteEl = h("div", "k2lab-note");
  const promptEl = h("div", "k2lab-prompt");
  const stepsEl = h("div", "k2lab-steps");
  const msgsEl = h("div", "k2lab-messages");
  const answerEl = h("div", "k2lab-answer");
  const lanesEl = h("div", "k2lab-runlanes");
  const verifyEl = h("div", "k2lab-verify");
  const aggEl = h("div", "k2lab-label k2lab-aggregation-label", "Aggregation of the lanes");
  lanesEl.hidden = verifyEl.hidden = aggEl.hidden = true;
  root.append(headEl, noteEl, promptEl, lanesEl, aggEl, stepsEl, msgsEl, answerEl, verifyEl);
  root.addEventListener("click", onRemoteClick);
  el.appendChild(root);

  const send = (action, extra) => model.send({ action, ...(extra || {}) });
  const note = (text, level) => {
    noteEl.textContent = text || "";
    noteEl.className = "k2lab-note" + (level ? " k2lab-" + level : "");
  };
  const uiOf = (id) => {
    if (!ui.has(id)) ui.set(id, { mode: null, text: null, feedback: "" });
    return ui.get(id);
  };

  // -- head: title, status line, run-level buttons ----------------------------------------------
  function renderHead() {
    const hd = st.head;
    if (!hd) return;
    root.dataset.k2labRunId = hd.run_id || "";
    root.classList.toggle("k2lab-ended", hd.status === "ended");
    headEl.replaceChildren();
    const title = h("div", "k2lab-title");
    title.appendChild(h("strong", null, "k2lab"));
    if (hd.parent_run_id) {
      title.appendChild(h("span", "k2lab-badge", `branch of ${hd.parent_run_id}`));
    }
    if (hd.demo) { // run.start's field, not the label
      title.appendChild(h("span", "k2lab-badge k2lab-demo", "offline demo model"));
    }
    if (hd.isolation === "in-kernel") {
      title.appendChild(
        h("span", "k2lab-badge k2lab-danger", "sandbox OFF: code runs in this notebook's kernel")
      );
    }
    const running = hd.status !== "ended";
    const waiting = st.order.some((c) => st.cards.get(c).status === "pending");
    const spin = hd.status === "waiting" ? "queued behind the previous run" : running ? (waiting ? "waiting for you" : "running") : "";
    if (spin) title.appendChild(h("span", "k2lab-badge k2lab-running", spin));
    headEl.appendChild(title);
    headEl.appendChild(h("div", "k2lab-status", hd.status_text || ""));
    if (running) {
      const bar = h("div", "k2lab-actions");
      if (hd.policy === "ask" && !hd.approve_all) {
        bar.appendChild(btn("Approve all", "k2lab-approve-all", () => send("approve_all"), "Approve this and every later call of this run"));
      }
      if (hd.status === "waiting") {
        bar.appendChild(btn("Stop the earlier run", "k2lab-stop-previous", () => send("stop_previous"), "Stop the run this one waits for (e.g. one whose cell was re-run)"));
      }
      bar.appendChild(btn("Stop", "k2lab-stop", () => send("stop"), "Stop the whole run (the trace is kept)"));
      headEl.appendChild(bar);
    }
    if (promptEl.dataset.shown !== "1" || promptEl.lastChild.textContent !== (hd.prompt || "")) {
      // drawn again only when it changed: a long prompt costs nothing per tick
      promptEl.replaceChildren(h("span", "k2lab-label", "Prompt"), h("pre", null, hd.prompt || ""));
      promptEl.dataset.shown = "1";
    }
    promptEl.hidden = !hd.prompt; // a queued run has no prompt yet: no empty block
    msgsEl.replaceChildren(
      ...(hd.messages || []).map((m) => h("div", `k2lab-message k2lab-${m.level}`, `${m.kind}: ${m.text}`))
    );
    answerEl.replaceChildren();
    if (hd.answer_html) {
      answerEl.appendChild(h("span", "k2lab-label", "Answer"));
      const body = h("div", "k2lab-markdown");
      body.innerHTML = hd.answer_html; // rendered by Python with raw HTML disabled
      armRemote(body);
      answerEl.appendChild(body);
    }
    if (hd.status === "ended" && hd.stop_reason !== "completed") {
      const why = h("div", "k2lab-message k2lab-warning", `Run ended: ${hd.stop_reason}${hd.error ? " — " + hd.error : ""}`);
      answerEl.appendChild(why);
    }
    aggEl.hidden = !(hd.heavy && hd.aggregating);
    if (hd.heavy && hd.lanes_note) {
      const label = hd.aggregating ? "Aggregation of " : "";
      answerEl.appendChild(h("div", "k2lab-runlanes-note", label + hd.lanes_note));
    }
    renderVerify(hd.verify);
  }

  // -- the verify pass: its outcome and what was checked, next to the answer ------------------
  function renderVerify(v) {
    verifyEl.hidden = !v;
    verifyEl.replaceChildren();
    if (!v) return;
    verifyEl.className = "k2lab-verify " + (VERIFY_CLASS[v.outcome] || "k2lab-verifying");
    verifyEl.dataset.outcome = v.outcome || "";
    const line = h("div", "k2lab-verify-head");
    line.appendChild(h("strong", null, "Verify: "));
    line.appendChild(h("span", "k2lab-badge k2lab-verify-outcome", v.text));
    const checks = v.rounds.reduce((n, r) => n + r.checks.length, 0);
    line.appendChild(h("span", "k2lab-by", ` ${count(v.rounds.length, "round")} · ${count(checks, "check")} run`));
    verifyEl.appendChild(line);
    for (const r of v.rounds) {
      const det = h("details", "k2lab-verify-round");
      det.appendChild(h("summary", null, `Round ${r.round} of ${r.max_rounds}: ${r.status === "done" ? (r.outcome === "unverified" ? "could not verify" : r.outcome) : "checking…"}${r.reason ? " — " + r.reason : ""}${r.corrected ? " (a fault was found: the answer was corrected)" : ""}`));
      for (const c of r.checks) {
        const pre = h("pre", "k2lab-code k2lab-hl");
        pre.innerHTML = c.code_html; // pygments output, escaped by Python
        det.appendChild(pre);
        if (c.output) det.appendChild(outputBlock(c.output, "k2lab-stdout"));
      }
      if (r.summary_html) {
        const body = h("div", "k2lab-markdown k2lab-verify-summary");
        body.innerHTML = r.summary_html; // Python-rendered Markdown, raw HTML disabled
        det.appendChild(body);
      }
      verifyEl.appendChild(det);
    }
  }

  // -- heavy mode: the lanes side by side, each expandable to its steps and calls -------------
  function renderLanes() {
    lanesEl.hidden = st.lanes.size === 0;
    if (lanesEl.hidden) return;
    const canStop = st.head && st.head.can_stop_lane && st.head.status !== "ended";
    lanesEl.replaceChildren(h("span", "k2lab-label", `Lanes (${st.lanes.size})`));
    const row = h("div", "k2lab-runlane-row");
    for (const ln of st.lanes.values()) {
      const unfinished = ln.status === "ended" && ln.stop_reason !== "completed";
      const box = h("details", `k2lab-runlane k2lab-runlane-${ln.status}${unfinished ? " k2lab-runlane-unfinished" : ""}`);
      box.dataset.lane = ln.lane;
      // a lane with a call waiting for you opens (unless you closed it)
      box.open = laneOpen.has(ln.lane) ? laneOpen.get(ln.lane) : !!ln.waiting;
      box.addEventListener("toggle", () => laneOpen.set(ln.lane, box.open));
      const sum = h("summary", "k2lab-runlane-head");
      sum.appendChild(h("strong", null, `Lane ${ln.lane}`));
      const state = ln.status === "ended" ? (ln.stop_reason === "completed" ? "finished" : ln.stop_reason) : ln.waiting ? "waiting for you" : "running";
      sum.appendChild(h("span", "k2lab-badge k2lab-runlane-status", state));
      sum.appendChild(h("span", "k2lab-runlane-meta", `step ${ln.step} · ${count(ln.n_calls, "tool call")} · ${ln.prompt_tokens + ln.completion_tokens} tokens${ln.cost ? " · " + ln.cost : ""}`));
      // in the head, so it shows on a closed lane too (btn() keeps the click from toggling it)
      if (canStop && ln.status !== "ended") {
        sum.appendChild(btn("Stop lane", "k2lab-stop-lane", () => send("stop_lane", { lane: ln.lane }), `Stop lane ${ln.lane} only (the others go on)`));
      }
      box.appendChild(sum);
      if (ln.steps_omitted) box.appendChild(h("div", "k2lab-by", `${count(ln.steps_omitted, "earlier step")} not shown (in the saved trace)`));
      for (const s of ln.steps) {
        const stepBox = h("div", "k2lab-runlane-step");
        if (s.reasoning) {
          const det = h("details", "k2lab-reasoning");
          det.appendChild(h("summary", null, `Step ${s.step} · reasoning${s.tokens != null ? " · " + s.tokens + " tokens" : ""}${s.done ? "" : " · streaming…"}`));
          det.appendChild(h("pre", null, s.reasoning));
          stepBox.appendChild(det);
        } else stepBox.appendChild(h("div", "k2lab-step-head", `Step ${s.step}`));
        for (const c of s.calls) {
          const card = h("div", `k2lab-call k2lab-status-${c.status}`);
          card.appendChild(h("div", "k2lab-call-head", `Tool call ${c.name} · ${c.label}`));
          const pre = h("pre", "k2lab-code k2lab-hl");
          pre.innerHTML = c.code_html; // pygments output, escaped by Python
          card.appendChild(pre);
          if (c.output) card.appendChild(outputBlock(c.output, "k2lab-stdout"));
          if (c.status === "pending" && st.head && st.head.status !== "ended") {
            // --approve ask: this lane's call, decided by (lane run id, call id): ids repeat across lanes
            const bar = h("div", "k2lab-actions k2lab-lane-decide");
            const who = { call_id: c.call_id, run_id: ln.run_id };
            bar.appendChild(btn("Approve", "k2lab-approve", () => send("approve", who), `Run lane ${ln.lane}'s call`));
            bar.appendChild(btn("Reject", "k2lab-reject", () => send("reject", who), `Do not run lane ${ln.lane}'s call (the model is told)`));
            card.appendChild(bar);
          } else if (st.head && st.head.status === "ended" && ["done", "error", "rejected", "not_run"].includes(c.status)) {
            laneFork(card, ln, c);
          }
          stepBox.appendChild(card);
        }
        box.appendChild(stepBox);
      }
      if (ln.answer_html) {
        const ans = h("div", "k2lab-markdown k2lab-runlane-answer");
        ans.innerHTML = ln.answer_html; // Python-rendered Markdown, raw HTML disabled
        box.appendChild(h("div", "k2lab-label", `Lane ${ln.lane}'s answer`));
        box.appendChild(ans);
      }
      row.appendChild(box);
    }
    lanesEl.appendChild(row);
  }

  // the code editor of a card (edit & run, fork): the person's text survives re-renders in ``u``
  function codeEditor(u, code) {
    const ta = h("textarea", "k2lab-editor");
    ta.value = u.text !== null ? u.text : code;
    ta.rows = Math.min(24, Math.max(4, ta.value.split("\n").length + 1));
    ta.spellcheck = false;
    ta.addEventListener("input", () => (u.text = ta.value));
    ta.addEventListener("keydown", (ev) => ev.stopPropagation()); // keep JupyterLab shortcuts out
    return ta;
  }

  // a lane's call forks into a single run on that lane's conversation (by its lane run id: ids
  // repeat across lanes), in the session's sandbox: the lane's own sandbox closed with it
  function laneFork(card, ln, c) {
    const u = uiOf(`${ln.run_id} ${c.call_id}`);
    const bar = h("div", "k2lab-actions k2lab-lane-fork");
    if (u.mode === "fork") {
      const ta = codeEditor(u, c.code);
      card.appendChild(ta);
      card.appendChild(h("div", "k2lab-by", `The branch is a single run on lane ${ln.lane}'s conversation up to this call. It runs in this session's sandbox, not lane ${ln.lane}'s (that one closed with the lane), as it is now: it is not rewound.`));
      const done = () => { u.mode = null; u.text = null; renderLanes(); };
      bar.appendChild(btn("Fork with this code", "k2lab-fork-run", () => { send("fork", { call_id: c.call_id, run_id: ln.run_id, code: ta.value }); done(); }));
      bar.appendChild(btn("Cancel", "k2lab-cancel", done));
    } else {
      bar.appendChild(btn("Fork from here", "k2lab-fork", () => { u.mode = "fork"; u.text = c.code; renderLanes(); }, `Re-run from lane ${ln.lane}'s call (optionally edited) as a new single run`));
    }
    card.appendChild(bar);
  }

  // -- steps: reasoning streams into a <details>, text below, then the calls --------------------
  function stepEl(n) {
    let e = stepEls.get(n);
    if (e) return e;
    const node = h("div", "k2lab-step");
    node.dataset.step = String(n);
    const det = h("details", "k2lab-reasoning");
    det.open = true;
    const sum = h("summary");
    const pre = h("pre");
    det.append(sum, pre);
    // toggle events also fire for our own changes: only a change we did not make is the person's
    det.addEventListener("toggle", () => { if (det.open !== e.expectOpen) userToggled.add(n); });
    const content = h("div", "k2lab-content");
    const calls = h("div", "k2lab-calls");
    node.append(det, content, calls);
    // keep steps in order even if a snapshot arrives after patches
    const after = [...stepEls.keys()].filter((k) => k > n).sort((a, b) => a - b)[0];
    stepsEl.insertBefore(node, after !== undefined ? stepEls.get(after).node : null);
    e = { node, det, sum, pre, content, calls, expectOpen: true };
    stepEls.set(n, e);
    return e;
  }

  // finished reasoning folds unless the person chose otherwise, but stays open beside a call of
  // its step that waits for a decision (as the panel does): it is what the decision rests on
  function foldReasoning(n) {
    const e = stepEls.get(n);
    const s = st.steps.get(n);
    if (!e || !s || !s.done || userToggled.has(n)) return;
    const waiting = (s.calls || []).some((id) => (st.cards.get(id) || {}).status === "pending");
    if (e.expectOpen === waiting) return;
    e.expectOpen = waiting; // open while a call waits, folded once none does
    e.det.open = waiting;
  }

  function renderStep(s) {
    const e = stepEl(s.step);
    if (e.pre.textContent.length !== s.reasoning.length) e.pre.textContent = s.reasoning;
    e.det.hidden = !s.reasoning;
    const tokens = s.tokens == null ? "" : ` · ${s.tokens} tokens`; // the usage's, once it came
    const secs = s.duration != null ? s.duration : st.head && st.head.started && s.started ? Date.now() / 1000 - s.started : null;
    e.sum.textContent = `Step ${s.step} · reasoning${tokens}${secs != null ? " · " + fmtSeconds(secs) : ""}${s.done ? "" : " · streaming…"}`;
    foldReasoning(s.step);
    if (s.done && s.content_html && s.calls.length) {
      e.content.innerHTML = s.content_html; // Python-rendered Markdown, raw HTML disabled
      armRemote(e.content);
    } else if (!s.done) {
      e.content.textContent = s.content;
    } else {
      e.content.textContent = ""; // the final answer is shown once, below
    }
  }

  // -- cards --------------------------------------------------------------------------------------
  function renderCard(c) {
    let node = cardEls.get(c.call_id);
    const fresh = h("div", `k2lab-call k2lab-status-${c.status}`);
    fresh.dataset.callId = c.call_id;
    const u = uiOf(c.call_id);
    const head = h("div", "k2lab-call-head");
    head.appendChild(h("span", null, "Tool call "));
    head.appendChild(h("code", null, c.name));
    // the fold's words (Python's view.call_label): the fallbacks and the saved card say the same
    head.appendChild(h("span", "k2lab-badge", c.label));
    if (c.by) head.appendChild(h("span", "k2lab-by", `by ${c.by}`));
    if (c.duration != null) head.appendChild(h("span", "k2lab-by", fmtSeconds(c.duration)));
    fresh.appendChild(head);

    const editing = u.mode === "edit" || u.mode === "fork";
    if (editing) {
      fresh.appendChild(codeEditor(u, c.edited_code != null ? c.edited_code : c.code));
    } else if (c.edited_code != null) {
      const det = h("details", "k2lab-proposed");
      det.appendChild(h("summary", null, "proposed by the model"));
      const pre = h("pre", "k2lab-code k2lab-hl");
      pre.innerHTML = c.code_html;
      det.appendChild(pre);
      fresh.appendChild(det);
      fresh.appendChild(h("div", "k2lab-label", "what ran (edited by the user)"));
      const ran = h("pre", "k2lab-code k2lab-hl");
      ran.innerHTML = c.edited_code_html;
      fresh.appendChild(ran);
    } else {
      const pre = h("pre", "k2lab-code k2lab-hl");
      pre.innerHTML = c.code_html; // pygments output, escaped by Python
      fresh.appendChild(pre);
    }
    if (c.problem) fresh.appendChild(h("div", "k2lab-problem", c.problem));
    if (c.status === "rejected" && c.feedback) fresh.appendChild(h("div", "k2lab-feedback", `Feedback: ${c.feedback}`));

    const bar = h("div", "k2lab-actions");
    const codeNow = () => (u.text !== null ? u.text : c.code);
    // after a decision is sent, the card waits for the run's answer: no double clicks
    const sent = (action, extra) => {
      // the focused button is about to be disabled: keep the focus in the card, not on <body>
      fresh.tabIndex = -1;
      if (fresh.contains(document.activeElement)) fresh.focus({ preventScroll: true });
      bar.querySelectorAll("button").forEach((b) => (b.disabled = true));
      send(action, { call_id: c.call_id, ...extra });
      u.mode = null;
    };
    if (c.status === "pending") {
      if (u.mode === "edit") {
        bar.appendChild(btn("Run edited", "k2lab-run-edited", () => sent("edit", { code: codeNow() })));
        bar.appendChild(btn("Cancel", "k2lab-cancel", () => { u.mode = null; u.text = null; renderCard(c); }));
      } else if (u.mode === "reject") {
        const fb = h("input", "k2lab-feedback-input");
        fb.placeholder = "Tell the model why (optional)";
        fb.value = u.feedback || "";
        fb.addEventListener("input", () => (u.feedback = fb.value));
        fb.addEventListener("keydown", (ev) => {
          ev.stopPropagation();
          if (ev.key === "Enter") sent("reject", { feedback: fb.value });
        });
        fresh.appendChild(fb);
        bar.appendChild(btn("Send rejection", "k2lab-send-reject", () => sent("reject", { feedback: u.feedback })));
        bar.appendChild(btn("Cancel", "k2lab-cancel", () => { u.mode = null; renderCard(c); }));
      } else {
        bar.appendChild(btn("Approve", "k2lab-approve", () => sent("approve", {})));
        bar.appendChild(btn("Edit & run", "k2lab-edit", () => { u.mode = "edit"; u.text = c.code; u.focus = ".k2lab-editor"; renderCard(c); }));
        bar.appendChild(btn("Reject", "k2lab-reject", () => { u.mode = "reject"; u.focus = ".k2lab-feedback-input"; renderCard(c); }));
      }
    } else if (["done", "error", "rejected", "not_run"].includes(c.status)) {
      if (u.mode === "fork") {
        bar.appendChild(btn("Fork with this code", "k2lab-fork-run", () => { send("fork", { call_id: c.call_id, code: codeNow() }); u.mode = null; u.text = null; }));
        bar.appendChild(btn("Cancel", "k2lab-cancel", () => { u.mode = null; u.text = null; renderCard(c); }));
      } else {
        if ((c.status === "done" || c.status === "error") && c.replayable !== false) {
          bar.appendChild(btn("Replay", "k2lab-replay", () => send("replay", { call_id: c.call_id }), "Run this call again in the sandbox and compare the output"));
        }
        // a heavy run's own cards are its aggregation's verify calls: a fork takes a lane's call
        if (!(st.head && st.head.heavy)) bar.appendChild(btn("Fork from here", "k2lab-fork", () => { u.mode = "fork"; u.text = c.edited_code != null ? c.edited_code : c.code; renderCard(c); }, "Re-run from this call (optionally edited) as a new branch"));
        if (c.name === "python") bar.appendChild(btn("Insert as cell", "k2lab-insert", () => insertCell(c)));
      }
    }
    fresh.appendChild(bar);

    if (c.output !== null && c.output !== undefined && c.status !== "rejected" && !c.problem) {
      const res = h("div", "k2lab-result " + (c.ok ? "k2lab-ok" : "k2lab-failed"));
      if (c.output.trim()) res.appendChild(outputBlock(c.output, "k2lab-stdout"));
      for (const piece of c.display_html || []) {
        const d = h("div", "k2lab-display");
        d.innerHTML = piece; // images / sandboxed iframes built by Python
        armRemote(d);
        res.appendChild(d);
      }
      fresh.appendChild(res);
    }
    if (c.replay) {
      const r = c.replay;
      const rep = h("div", "k2lab-replay");
      if (r.running) rep.textContent = "Replaying…";
      else if (r.error) rep.textContent = `Replay failed: ${r.error}`;
      else {
        rep.appendChild(h("strong", null, r.changed ? "Replayed: output changed" : "Replayed: same output"));
        if (r.changed && r.new_output_html) {
          const d = h("div");
          d.innerHTML = r.new_output_html;
          armRemote(d);
          rep.appendChild(d);
        }
      }
      fresh.appendChild(rep);
    }
    const hadFocus = node && node.contains(document.activeElement);
    if (node) node.replaceWith(fresh);
    else stepEl(c.step).calls.appendChild(fresh);
    cardEls.set(c.call_id, fresh);
    if (u.focus) {
      // Reject opens the feedback box, Edit & run the editor: the keyboard goes there
      const target = fresh.querySelector(u.focus);
      u.focus = null;
      if (target) target.focus();
    } else if (hadFocus) {
      // the card was rebuilt under the focus (a decision answered): focus the next call that
      // waits, else this card (never <body>)
      const next = root.querySelector(".k2lab-status-pending .k2lab-approve");
      if (next) next.focus();
      else { fresh.tabIndex = -1; fresh.focus({ preventScroll: true }); }
    }
    foldReasoning(c.step);
  }

  function insertCell(c) {
    const code = c.edited_code != null ? c.edited_code : c.code;
    // The k2lab labextension listens for this event and inserts the cell below; see README.
    const ev = new CustomEvent("k2lab:insert-cell", { bubbles: true, cancelable: true, detail: { code, callId: c.call_id, runId: root.dataset.k2labRunId || undefined } });
    el.dispatchEvent(ev);
    if (ev.defaultPrevented) { note("Inserted as a cell below.", "info"); return; }
    const done = () => note("Copied the code to the clipboard: paste it into a new cell (or use %k2 export).", "info");
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(code).then(done, () => send("insert", { call_id: c.call_id }));
    } else {
      send("insert", { call_id: c.call_id });
    }
  }

  // -- messages from Python ----------------------------------------------------------------------
  function apply(msg) {
    if (msg.kind === "snapshot") {
      st.head = msg.head;
      st.steps = new Map(msg.steps.map((s) => [s.step, s]));
      st.cards = new Map(msg.cards.map((c) => [c.call_id, c]));
      st.order = msg.cards.map((c) => c.call_id);
      for (const s of msg.steps) renderStep(s);
      for (const c of msg.cards) renderCard(c);
      st.lanes = new Map((msg.lanes || []).map((l) => [l.lane, l]));
      renderHead();
      renderLanes();
      return;
    }
    if (msg.kind === "patch") {
      for (const p of msg.steps) {
        const had = st.steps.get(p.step) || { reasoning: "", content: "" };
        // from 0 and 0: the texts start again (a step_restart notice, or step.end's whole message)
        const old = p.reasoning_from === 0 && p.content_from === 0 ? { reasoning: "", content: "" } : had;
        if (old.reasoning.length !== p.reasoning_from || old.content.length !== p.content_from) {
          send("hello"); // we missed something: ask for the whole state
          return;
        }
        const s = { ...p, reasoning: old.reasoning + p.reasoning_add, content: old.content + p.content_add };
        st.steps.set(p.step, s);
        renderStep(s);
      }
      for (const c of msg.cards) {
        if (!st.cards.has(c.call_id)) st.order.push(c.call_id);
        st.cards.set(c.call_id, c);
        renderCard(c);
      }
      for (const l of msg.lanes || []) {
        if (l.partial) {
          // only the lane's changed steps came: merge them by step number, keep the recent ones
          const had = st.lanes.get(l.lane);
          const steps = new Map((had ? had.steps : []).map((x) => [x.step, x]));
          for (const x of l.steps) steps.set(x.step, x);
          l.steps = [...steps.values()].filter((x) => x.step >= l.first_step).sort((a, b) => a.step - b.step);
        }
        st.lanes.set(l.lane, l);
      }
      if (msg.head) st.head = "prompt" in msg.head ? msg.head : { ...msg.head, prompt: st.head && st.head.prompt };
      renderHead();
      if ((msg.lanes || []).length || msg.head) renderLanes();
      return;
    }
    if (msg.kind === "ping") send("pong"); // Python asks whether any view of this run is open
    if (msg.kind === "error") note(msg.message, "error");
    if (msg.kind === "info") note(msg.message, "info");
  }

  const onMsg = (msg) => apply(msg);
  model.on("msg:custom", onMsg);
  send("hello");
  return () => model.off("msg:custom", onMsg);
}

export default { render };
