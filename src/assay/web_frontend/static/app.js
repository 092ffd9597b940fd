// Assay's web page. Talks only to the public REST API under /api/v1, so any static server
// (nginx in Phase 2) can serve it unchanged. All program output is inserted as text nodes,
// never as HTML.
"use strict";

const API = "/api/v1";
const TERMINAL = new Set(["completed", "failed", "timeout", "oom", "output_limit", "compile_error", "error", "cancelled"]);
const PAGE = 25;
const EXAMPLES = {
  hello: 'import platform\n\nprint(f"Hello from Python {platform.python_version()} in an Assay sandbox")\n',
  stdin: 'import sys\n\nfor number, line in enumerate(sys.stdin, 1):\n    print(number, line.rstrip()[::-1])\n',
  timeout: '# Runs past its time limit: the verdict is "timeout".\nwhile True:\n    pass\n',
  memory: '# Grows until the memory limit: the verdict is "oom".\nhog = []\nwhile True:\n    hog.append(b"x" * 10_000_000)\n',
  stream: 'import time\n\nfor step in range(1, 6):\n    print(f"step {step} of 5", flush=True)\n    time.sleep(1)\nprint("done")\n',
  error: 'def divide(a, b):\n    return a / b\n\nprint(divide(1, 0))\n',
};
const EXAMPLE_STDIN = { stdin: "hello\nworld\n" };

const $ = (id) => document.getElementById(id);
const state = {
  key: localStorage.getItem("assay.apiKey") || "",
  items: new Map(),
  order: [],
  cursor: null,
  selected: null,
  detailAbort: null,
  finished: [], // [time ms, end-to-end seconds] of evaluations seen finishing
  totals: [], // [time ms, total terminal count] from /queue
  languages: [], // from /languages
  example: null, // the example the editor was last filled with: replaced on a language change
};

class ApiError extends Error {
  constructor(message, code, status) { super(message); this.code = code; this.status = status; }
}

function headers(extra = {}) {
  return state.key ? { ...extra, Authorization: `Bearer ${state.key}` } : extra;
}

async function api(path, { method = "GET", body } = {}) {
  const response = await fetch(API + path, {
    method,
    headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401) askForKey();
    throw new ApiError(data?.error?.message || `HTTP ${response.status}`, data?.error?.code, response.status);
  }
  return data;
}

// Server-Sent Events over fetch (EventSource cannot send an Authorization header).
async function stream(path, onEvent, signal, onOpen = () => {}) {
  const response = await fetch(API + path, { headers: headers(), signal });
  if (!response.ok) {
    if (response.status === 401) askForKey();
    throw new ApiError(`HTTP ${response.status}`, "stream", response.status);
  }
  onOpen();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { type: "message", data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline).replace(/\r$/, "");
      buffer = buffer.slice(newline + 1);
      if (line === "") {
        if (event.data.length) onEvent(event.type, JSON.parse(event.data.join("\n")));
        event = { type: "message", data: [] };
      } else if (line.startsWith("data:")) event.data.push(line.slice(5).trimStart());
      else if (line.startsWith("event:")) event.type = line.slice(6).trim();
    }
  }
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

const seconds = (value) => (value == null ? "–" : value < 1 ? `${Math.round(value * 1000)} ms` : `${value.toFixed(2)} s`);
const bytes = (value) => (value == null ? "–" : `${(value / 1048576).toFixed(1)} MiB`);
const shortId = (id) => id.slice(0, 8);
const since = (a, b) => (a && b ? (new Date(b) - new Date(a)) / 1000 : null);
function clock(iso) {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}
function badge(status) { return el("span", { class: `badge ${status}`, text: status.replace("_", " ") }); }

// ---- editor ---------------------------------------------------------------------------
// A light highlighter: comments, strings, one "mark" (decorators, directives, variables),
// numbers, calls and keywords, in each language's syntax. Its patterns hold no groups.
const C_COMMENT = String.raw`\/\/[^\n]*|\/\*[\s\S]*?(?:\*\/|$)`;
const DQ = String.raw`"(?:\\.|[^"\\\n])*"?`;
const SQ = String.raw`'(?:\\.|[^'\\\n])*'?`;
const TEMPLATE = String.raw`\x60(?:\\[\s\S]|[^\x60\\])*\x60?`;
const C_WORDS = "auto break case char const continue default do double else enum extern float for goto if inline int " +
  "long register restrict return short signed sizeof static struct switch typedef union unsigned void volatile while " +
  "bool true false NULL";
const JS_WORDS = "async await break case catch class const continue default delete do else export extends finally for " +
  "from function if import in instanceof let new of return static super switch this throw try typeof var void while " +
  "yield null undefined true false";
const SYNTAX = {
  python: {
    comment: String.raw`#[^\n]*`,
    string: String.raw`[rbfuRBFU]{0,2}(?:"""[\s\S]*?(?:"""|$)|'''[\s\S]*?(?:'''|$)|${DQ}|${SQ})`,
    mark: String.raw`@[\w.]+`,
    words: "False None True and as assert async await break class continue def del elif else except finally for " +
      "from global if import in is lambda match case nonlocal not or pass raise return try while with yield",
  },
  c: { comment: C_COMMENT, string: `${DQ}|${SQ}`, mark: String.raw`#\s*[a-z]+`, words: C_WORDS },
  cpp: {
    comment: C_COMMENT, string: `${DQ}|${SQ}`, mark: String.raw`#\s*[a-z]+`,
    words: C_WORDS + " class namespace template typename public private protected virtual override new delete this " +
      "using try catch throw nullptr constexpr noexcept operator friend explicit std",
  },
  java: {
    comment: C_COMMENT, string: String.raw`"""[\s\S]*?(?:"""|$)|${DQ}|${SQ}`, mark: String.raw`@\w+`,
    words: "abstract boolean break byte case catch char class continue default do double else enum extends final " +
      "finally float for if implements import instanceof int interface long new package private protected public " +
      "record return short static super switch this throw throws try var void while null true false",
  },
  javascript: { comment: C_COMMENT, string: `${DQ}|${SQ}|${TEMPLATE}`, mark: String.raw`@\w+`, words: JS_WORDS },
  typescript: {
    comment: C_COMMENT, string: `${DQ}|${SQ}|${TEMPLATE}`, mark: String.raw`@\w+`,
    words: JS_WORDS + " interface type enum implements private public protected readonly declare namespace abstract " +
      "as keyof string number boolean any unknown never",
  },
  go: {
    comment: C_COMMENT, string: String.raw`${DQ}|${SQ}|\x60[^\x60]*\x60?`, mark: "(?!)",
    words: "break case chan const continue default defer else fallthrough for func go goto if import interface map " +
      "package range return select struct switch type var nil true false",
  },
  rust: {
    // A char literal is one character or escape in quotes: a lifetime ('a) is not one.
    comment: C_COMMENT, string: String.raw`r#*"[\s\S]*?"#*|b?"(?:\\[\s\S]|[^"\\])*"?|b?'(?:\\[^'\n]{1,10}|[^'\\\n])'`,
    mark: String.raw`#!?\[[^\]\n]*\]`,
    words: "as async await break const continue crate dyn else enum extern false fn for if impl in let loop match mod " +
      "move mut pub ref return self Self static struct super trait true type unsafe use where while",
  },
  bash: {
    // A comment starts a word: $# and ${#name} are not comments.
    comment: String.raw`(?<![^\s;|&(])#[^\n]*`, string: String.raw`"(?:\\[\s\S]|[^"\\])*"?|'[^']*'?`,
    mark: String.raw`\$\{[^}\n]*\}|\$[\w@*#?$!-]`,
    words: "if then else elif fi for while until do done case esac in function return local export readonly select",
  },
};
const NUMBER = String.raw`\b(?:0[xXoObB][\da-fA-F_]+|\d[\d_]*(?:\.\d*)?(?:[eE][+-]?\d+)?)\w*`;
const highlighters = new Map();
function highlighter(language) {
  if (!highlighters.has(language)) {
    const syntax = SYNTAX[language] || SYNTAX.python;
    highlighters.set(language, {
      words: new Set(syntax.words.split(" ")),
      tokens: new RegExp(`(${syntax.comment})|(${syntax.string})|(${syntax.mark})|(${NUMBER})|` +
        String.raw`([A-Za-z_]\w*!?)(?=\s*\()|([A-Za-z_]\w*)`, "g"),
    });
  }
  return highlighters.get(language);
}

function highlight() {
  const code = $("code").value;
  const { words, tokens } = highlighter($("language").value);
  const fragment = document.createDocumentFragment();
  let last = 0;
  for (const match of code.matchAll(tokens)) {
    const [text, comment, string, mark, number, call, word] = match;
    let kind = null;
    if (comment) kind = "com"; else if (string) kind = "str"; else if (mark) kind = "dec";
    else if (number) kind = "num"; else if (call) kind = words.has(call) ? "kw" : "fn";
    else if (word && words.has(word)) kind = "kw";
    if (!kind) continue;
    fragment.append(code.slice(last, match.index), el("span", { class: `tok-${kind}`, text }));
    last = match.index + text.length;
  }
  fragment.append(code.slice(last) + "\n");
  $("highlight").replaceChildren(fragment);
  const lines = code.split("\n").length;
  $("gutter").textContent = Array.from({ length: lines }, (_, i) => i + 1).join("\n") + "\n";
  syncScroll();
}
function syncScroll() {
  const area = $("code");
  $("highlight").scrollTop = area.scrollTop;
  $("highlight").scrollLeft = area.scrollLeft;
  $("gutter").scrollTop = area.scrollTop;
}

// ---- languages ------------------------------------------------------------------------
const languageInfo = (name) => state.languages.find((language) => language.name === name);
const languageTitle = (name) => languageInfo(name)?.title || name;
const languageLabel = (language) => (language.version ? `${language.title} ${language.version}` : language.title);
const splitWords = (text) => text.split(/\s+/).filter(Boolean);

async function loadLanguages() {
  let languages;
  try {
    ({ languages } = await api("/languages"));
  } catch { return; } // the selector keeps Python, the server's default
  if (!languages?.length) return;
  state.languages = languages;
  const select = $("language");
  const before = select.value;
  select.replaceChildren(...languages.map((language) => el("option", { value: language.name, text: languageLabel(language) })));
  select.value = languageInfo(before) ? before : languageInfo("python") ? "python" : languages[0].name;
  $("files").accept = [...languages.flatMap((language) => language.extensions), "text/plain"].join(",");
  languageChanged(select.value !== before);
}

// The editor takes the new language's example unless it holds code of the user's own.
function languageChanged(loadExample = true) {
  const name = $("language").value;
  const language = languageInfo(name);
  const code = $("code");
  if (loadExample && language?.example && (!code.value.trim() || code.value === state.example)) {
    code.value = language.example;
    state.example = language.example;
  }
  const options = $("compiler-options");
  options.disabled = !language?.compiled;
  options.title = options.disabled ? `${languageTitle(name)} is not compiled` : "";
  code.setAttribute("aria-label", `${languageTitle(name)} code (Ctrl+Enter to run)`);
  highlight();
}

// A file's language from its name's ending (the longest that matches), else the selector's.
function languageOfFile(fileName) {
  const lower = fileName.toLowerCase();
  let best = null;
  for (const language of state.languages) {
    for (const extension of language.extensions) {
      if (lower.endsWith(extension.toLowerCase()) && (!best || extension.length > best.length)) {
        best = { name: language.name, length: extension.length };
      }
    }
  }
  return best ? best.name : $("language").value;
}

// ---- submitting -----------------------------------------------------------------------
function submission(code, language = $("language").value) {
  const body = { code, language };
  // The compiler options are written for the selected language's compiler: other files go without.
  const options = splitWords($("compiler-options").value);
  if (options.length && !$("compiler-options").disabled && language === $("language").value) {
    body.compiler_options = options;
  }
  const args = splitWords($("args").value);
  if (args.length) body.args = args;
  const stdin = $("stdin").value;
  if (stdin) body.stdin = stdin;
  const timeout = parseFloat($("timeout").value);
  if (!Number.isNaN(timeout)) body.timeout_seconds = timeout;
  const memory = parseInt($("memory").value, 10);
  if (!Number.isNaN(memory)) body.memory_mb = memory;
  const labels = {};
  for (const pair of $("labels").value.split(",")) {
    const [key, ...rest] = pair.split("=");
    if (key.trim()) labels[key.trim()] = rest.join("=").trim();
  }
  if (Object.keys(labels).length) body.labels = labels;
  return body;
}

async function submit(bodies) {
  const button = $("run");
  button.disabled = true;
  $("submit-status").textContent = "Submitting…";
  try {
    let created;
    if (bodies.length === 1) created = [await api("/evaluations", { method: "POST", body: bodies[0] })];
    else {
      const batch = { evaluations: bodies, isolation: $("isolation").value };
      created = (await api("/evaluations/batch", { method: "POST", body: batch })).evaluations;
    }
    for (const evaluation of created.reverse()) upsert(evaluation);
    $("submit-status").textContent = created.length === 1 ? "Queued." : `Queued ${created.length} evaluations.`;
    if (created.length === 1 || bodies.length === 1) location.hash = `#/evaluations/${created[created.length - 1].id}`;
  } catch (error) {
    $("submit-status").textContent = `Refused: ${error.message}`;
  } finally {
    button.disabled = false;
  }
}

function runFromEditor() {
  const runs = Math.max(1, Math.min(100, parseInt($("runs").value, 10) || 1));
  const body = submission($("code").value);
  submit(Array.from({ length: runs }, () => body));
}

async function runFiles(files) {
  const bodies = [];
  for (const file of files) {
    const body = submission(await file.text(), languageOfFile(file.name));
    body.labels = { ...(body.labels || {}), file: file.name.slice(0, 256) };
    bodies.push(body);
  }
  if (bodies.length) submit(bodies);
  $("files").value = "";
}

// ---- the list -------------------------------------------------------------------------
function filters() {
  const params = new URLSearchParams();
  const status = $("filter-status").value;
  if (status) params.append("status", status);
  const label = $("filter-label").value.trim();
  if (label) params.append("label", label);
  return params;
}

function matchesFilters(evaluation) {
  const status = $("filter-status").value;
  if (status && evaluation.status !== status) return false;
  const label = $("filter-label").value.trim();
  if (label) {
    const [key, ...rest] = label.split(":");
    if (evaluation.labels?.[key] !== rest.join(":")) return false;
  }
  return true;
}

async function loadList(more = false) {
  const params = filters();
  params.set("limit", PAGE);
  if (more && state.cursor) params.set("cursor", state.cursor);
  try {
    const page = await api(`/evaluations?${params}`);
    if (!more) { state.items.clear(); state.order = []; }
    for (const evaluation of page.items) {
      if (!state.items.has(evaluation.id)) state.order.push(evaluation.id);
      state.items.set(evaluation.id, evaluation);
    }
    state.cursor = page.next_cursor;
    renderList();
  } catch (error) {
    $("list-empty").hidden = false;
    $("list-empty").textContent = `Cannot load evaluations: ${error.message}`;
  }
}

function upsert(evaluation) {
  if (!matchesFilters(evaluation)) {
    if (state.items.delete(evaluation.id)) state.order = state.order.filter((id) => id !== evaluation.id);
  } else {
    if (!state.items.has(evaluation.id)) state.order.unshift(evaluation.id);
    state.items.set(evaluation.id, { ...state.items.get(evaluation.id), ...evaluation });
  }
  renderList();
}

function renderList() {
  const rows = state.order.map((id) => {
    const evaluation = state.items.get(id);
    const labels = Object.entries(evaluation.labels || {}).map(([k, v]) => el("span", { class: "label-chip", text: `${k}=${v}` }));
    const ran = evaluation.duration_seconds != null && evaluation.status !== "compile_error";
    const duration = ran ? seconds(evaluation.duration_seconds) : "";
    const link = el("a", { href: `#/evaluations/${id}`, "data-id": id, "aria-current": String(id === state.selected) },
      badge(evaluation.status),
      el("span", { class: "ev-main" }, el("span", { class: "ev-id", text: shortId(id) }), ...labels),
      el("span", { class: "ev-meta", text: `${duration} ${clock(evaluation.created_at)}`.trim() }));
    return el("li", { "data-status": evaluation.status }, link);
  });
  $("evaluations").replaceChildren(...rows);
  $("list-empty").hidden = rows.length > 0;
  $("list-empty").textContent = "No evaluations yet. Write some code and press Run.";
  $("more").hidden = !state.cursor;
}

async function watchAll() {
  let delay = 1000;
  for (;;) {
    try {
      await stream("/events", (type, data) => {
        if (type === "evaluation") refreshOne(data.evaluation_id, data.type);
      }, undefined, () => {
        $("connection").className = "connection live";
        $("connection").title = "Live updates: connected";
        delay = 1000;
      });
    } catch (error) {
      if (error.status === 401) return;
    }
    $("connection").className = "connection down";
    $("connection").title = "Live updates: reconnecting";
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 15000);
    loadList();
  }
}

async function refreshOne(id, type) {
  try {
    const evaluation = await api(`/evaluations/${id}`);
    if (type === "finished" && evaluation.finished_at) {
      state.finished.push([Date.now(), since(evaluation.created_at, evaluation.finished_at)]);
    }
    upsert(evaluation);
  } catch { /* gone or not allowed: the list will catch up on the next load */ }
}

// ---- the detail view ------------------------------------------------------------------
function showFacts(evaluation) {
  $("d-id").textContent = shortId(evaluation.id);
  $("d-id").title = evaluation.id;
  $("d-status").replaceWith(Object.assign(badge(evaluation.status), { id: "d-status" }));
  $("d-exit").textContent = evaluation.exit_code ?? "–";
  $("d-signal").textContent = evaluation.signal ?? "–";
  // A program that did not compile never ran: its run has no time.
  $("d-duration").textContent = evaluation.status === "compile_error" ? "–" : seconds(evaluation.duration_seconds);
  $("d-compile-duration").textContent = seconds(evaluation.compile_duration_seconds);
  $("d-cpu").textContent = seconds(evaluation.cpu_time_seconds);
  $("d-memory").textContent = bytes(evaluation.peak_memory_bytes);
  $("d-wait").textContent = seconds(since(evaluation.created_at, evaluation.started_at));
  $("d-attempts").textContent = evaluation.attempts;
  $("d-error").hidden = !evaluation.error;
  $("d-error").textContent = evaluation.error || "";
  $("d-cancel").disabled = TERMINAL.has(evaluation.status);
  if (TERMINAL.has(evaluation.status)) {
    $("d-stdout").textContent = evaluation.stdout ?? $("d-stdout").textContent;
    $("d-stderr").textContent = evaluation.stderr ?? $("d-stderr").textContent;
  }
  const failed = evaluation.status === "compile_error";
  $("d-compile-block").hidden = !(evaluation.compile_output || failed);
  $("d-compile").textContent = evaluation.compile_output || (failed ? "(the compiler wrote nothing)" : "");
  $("d-compile").classList.toggle("failed", failed);
  $("d-compile-trunc").hidden = !evaluation.compile_output_truncated;
  $("d-stdout-trunc").hidden = !evaluation.stdout_truncated;
  $("d-stderr-trunc").hidden = !evaluation.stderr_truncated;
  if (evaluation.request) {
    $("d-code").textContent = evaluation.request.code;
    $("d-language").textContent = languageTitle(evaluation.request.language);
    $("d-curl").textContent = curlCommand(evaluation.request, evaluation.labels);
  }
}

function curlCommand(request, labels) {
  const body = { code: request.code, language: request.language };
  for (const field of ["stdin", "timeout_seconds", "memory_mb", "cpus", "output_limit_bytes",
    "compile_timeout_seconds", "compile_memory_mb"]) {
    if (request[field] != null && request[field] !== "") body[field] = request[field];
  }
  for (const field of ["compiler_options", "args"]) if (request[field]?.length) body[field] = request[field];
  if (Object.keys(request.files || {}).length) body.files = request.files;
  if (Object.keys(labels || {}).length) body.labels = labels;
  const auth = state.key ? `  -H "Authorization: Bearer $ASSAY_API_KEY" \\\n` : "";
  return `curl -sS -X POST '${location.origin}${API}/evaluations?wait=30' \\\n` +
    `  -H 'Content-Type: application/json' \\\n${auth}  --data-binary @- <<'JSON'\n` +
    `${JSON.stringify(body, null, 2)}\nJSON`;
}

function timelineEntry(event, start) {
  const offset = start ? `+${seconds((new Date(event.at) - start) / 1000)}` : "";
  let text = event.type;
  if (event.type === "started") text = `started (attempt ${event.data.attempt}, ${event.data.executor})`;
  if (event.type === "finished") text = `finished: ${event.data.status}` + (event.data.exit_code != null ? `, exit ${event.data.exit_code}` : "");
  if (event.type === "requeued" || event.type === "cancelled") text = `${event.type}${event.data.reason || event.data.error ? ": " + (event.data.reason || event.data.error) : ""}`;
  return el("li", { "data-type": event.type }, el("time", { datetime: event.at, text: `${clock(event.at)} ${offset}` }), text);
}

async function openDetail(id) {
  state.detailAbort?.abort();
  const abort = new AbortController();
  state.detailAbort = abort;
  state.selected = id;
  renderList();
  $("detail").hidden = false;
  document.querySelector(".layout").classList.add("with-detail");
  for (const node of ["d-stdout", "d-stderr", "d-compile", "d-events", "d-code", "d-curl"]) $(node).replaceChildren();
  $("d-compile-block").hidden = true;
  $("d-language").textContent = "–";
  let evaluation;
  try {
    evaluation = await api(`/evaluations/${id}`);
  } catch (error) {
    $("d-error").hidden = false;
    $("d-error").textContent = error.message;
    return;
  }
  if (abort.signal.aborted) return;
  showFacts(evaluation);
  // A finished evaluation's output is already shown whole; its events only fill the timeline.
  const live = !TERMINAL.has(evaluation.status);
  let start = null;
  let outputEvents = 0;
  const outputNote = el("li", { "data-type": "output", hidden: "" });
  try {
    await stream(`/evaluations/${id}/events`, (type, event) => {
      if (abort.signal.aborted) return;
      if (!start) start = new Date(event.at);
      if (event.type === "output") {
        outputEvents += 1;
        outputNote.hidden = false;
        outputNote.textContent = `${outputEvents} output chunk${outputEvents > 1 ? "s" : ""} streamed`;
        if (!outputNote.isConnected) $("d-events").append(outputNote);
        if (!live) return;
        const target = event.data.stream === "stderr" ? $("d-stderr") : $("d-stdout");
        target.append(document.createTextNode(event.data.text));
        target.scrollTop = target.scrollHeight;
        return;
      }
      $("d-events").append(timelineEntry(event, start));
      if (live && event.type === "started") {
        $("d-status").replaceWith(Object.assign(badge("running"), { id: "d-status" }));
      }
      if (live && event.type === "requeued") { $("d-stdout").replaceChildren(); $("d-stderr").replaceChildren(); }
      if (live && (event.type === "finished" || event.type === "cancelled")) {
        api(`/evaluations/${id}`).then((final) => { if (!abort.signal.aborted) { showFacts(final); upsert(final); } });
      }
    }, abort.signal);
  } catch (error) {
    if (error.name !== "AbortError") console.warn("event stream ended", error);
  }
}

function closeDetail() {
  state.detailAbort?.abort();
  state.selected = null;
  $("detail").hidden = true;
  document.querySelector(".layout").classList.remove("with-detail");
  renderList();
}

function route() {
  const match = location.hash.match(/^#\/evaluations\/([\w-]+)$/);
  if (match) openDetail(match[1]); else closeDetail();
}

// ---- queue panel and chart ------------------------------------------------------------
async function pollQueue() {
  try {
    const queue = await api("/queue");
    $("q-depth").textContent = queue.depth;
    $("q-running").textContent = queue.running;
    $("q-capacity").textContent = queue.capacity;
    const total = [...TERMINAL].reduce((sum, status) => sum + (queue.counts[status] || 0), 0);
    state.totals.push([Date.now(), total]);
  } catch { /* shown by the connection dot and the list */ }
  drawChart();
}

function drawChart() {
  const now = Date.now();
  const windowMs = 5 * 60 * 1000;
  const bucketMs = 10 * 1000;
  const buckets = windowMs / bucketMs;
  state.totals = state.totals.filter(([t]) => now - t <= windowMs + bucketMs);
  state.finished = state.finished.filter(([t]) => now - t <= windowMs);
  const throughput = new Array(buckets).fill(0);
  for (let i = 1; i < state.totals.length; i++) {
    const [t, total] = state.totals[i];
    const bucket = buckets - 1 - Math.floor((now - t) / bucketMs);
    if (bucket >= 0) throughput[bucket] += Math.max(0, total - state.totals[i - 1][1]);
  }
  const latency = Array.from({ length: buckets }, () => []);
  for (const [t, value] of state.finished) {
    const bucket = buckets - 1 - Math.floor((now - t) / bucketMs);
    if (bucket >= 0 && value != null) latency[bucket].push(value);
  }
  const medians = latency.map((values) => values.length ? values.sort((a, b) => a - b)[Math.floor(values.length / 2)] : null);
  const lastMinute = throughput.slice(-6).reduce((a, b) => a + b, 0);
  $("q-rate").textContent = lastMinute;
  const recent = state.finished.map(([, v]) => v).filter((v) => v != null).sort((a, b) => a - b);
  $("q-latency").textContent = recent.length ? seconds(recent[Math.floor(recent.length / 2)]) : "–";

  const canvas = $("q-chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 260;
  const height = canvas.clientHeight || 44;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  const style = getComputedStyle(document.documentElement);
  const barWidth = width / buckets;
  const maxCount = Math.max(1, ...throughput);
  ctx.fillStyle = style.getPropertyValue("--accent");
  ctx.globalAlpha = 0.55;
  throughput.forEach((count, i) => {
    const h = (count / maxCount) * (height - 4);
    ctx.fillRect(i * barWidth + 0.5, height - h, Math.max(1, barWidth - 1), h);
  });
  ctx.globalAlpha = 1;
  const maxLatency = Math.max(0.001, ...medians.filter((v) => v != null));
  ctx.strokeStyle = style.getPropertyValue("--warn");
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  let drawing = false;
  medians.forEach((value, i) => {
    if (value == null) { drawing = false; return; }
    const x = i * barWidth + barWidth / 2;
    const y = height - 2 - (value / maxLatency) * (height - 6);
    if (drawing) ctx.lineTo(x, y); else ctx.moveTo(x, y);
    drawing = true;
  });
  ctx.stroke();
}

// ---- API key and theme ----------------------------------------------------------------
function askForKey() {
  const dialog = $("key-dialog");
  if (!dialog.open) { $("key-input").value = state.key; dialog.showModal(); }
}

function setup() {
  const code = $("code");
  code.addEventListener("input", highlight);
  code.addEventListener("scroll", syncScroll);
  code.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); runFromEditor(); }
    if (event.key === "Tab" && !event.shiftKey) {
      event.preventDefault();
      code.setRangeText("    ", code.selectionStart, code.selectionEnd, "end");
      highlight();
    }
  });
  $("example").addEventListener("change", (event) => {
    const name = event.target.value;
    if (!name) return;
    code.value = EXAMPLES[name];
    state.example = EXAMPLES[name];
    $("stdin").value = EXAMPLE_STDIN[name] || "";
    if (languageInfo("python") || !state.languages.length) $("language").value = "python"; // Python programs
    languageChanged(false);
    event.target.value = "";
  });
  $("language").addEventListener("change", () => languageChanged());
  $("run").addEventListener("click", runFromEditor);
  $("files").addEventListener("change", (event) => runFiles([...event.target.files]));
  $("filter-status").addEventListener("change", () => loadList());
  $("filter-label").addEventListener("change", () => loadList());
  $("more").addEventListener("click", () => loadList(true));
  $("d-cancel").addEventListener("click", async () => {
    if (!state.selected) return;
    $("d-cancel").disabled = true;
    try { showFacts(await api(`/evaluations/${state.selected}/cancel`, { method: "POST" })); }
    catch (error) { $("d-error").hidden = false; $("d-error").textContent = error.message; }
  });
  $("d-copy").addEventListener("click", () => navigator.clipboard?.writeText($("d-curl").textContent));
  $("theme-button").addEventListener("click", () => {
    const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    localStorage.setItem("assay.theme", next);
    drawChart();
  });
  $("key-button").addEventListener("click", askForKey);
  $("key-dialog").addEventListener("close", () => {
    const action = $("key-dialog").returnValue;
    if (action === "save") state.key = $("key-input").value.trim();
    if (action === "clear") state.key = "";
    if (action === "save" || action === "clear") {
      if (state.key) localStorage.setItem("assay.apiKey", state.key); else localStorage.removeItem("assay.apiKey");
      loadLanguages();
      loadList();
      watchAll();
    }
  });
  window.addEventListener("hashchange", route);
  state.example = code.value;
  languageChanged(false);
  loadLanguages();
  loadList();
  watchAll();
  pollQueue();
  setInterval(pollQueue, 2000);
  route();
}

setup();
