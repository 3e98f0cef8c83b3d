// The ML Pipelines page (airflow-mlpipe): reads ./api/ and draws the overview, the selected
// pipeline's execution records, a chart per metric over runs, two runs compared stage by stage,
// and its model registry.
// Vanilla JS, no dependencies; every value from the API is inserted as text, never as HTML.
"use strict";

(function () {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const REFRESH_MS = 60000;
  // picked: the run ids ticked for comparison (kept across the periodic refresh, per pipeline);
  // comparing: the comparison on show, {pipeline, a, b}, a being the older run.
  const state = { pipelines: [], selected: null, timer: null, picked: new Set(), pickedFor: null, comparing: null, entries: [] };

  // -- small DOM helpers -------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") el.className = value;
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    append(el, children);
    return el;
  }

  function s(tag, attrs) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
    return el;
  }

  function append(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
  }

  function fmtDate(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    return d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  function fmtSeconds(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    const m = Math.floor(seconds / 60);
    if (m < 60) return `${m} min ${Math.round(seconds % 60)} s`;
    return `${Math.floor(m / 60)} h ${m % 60} min`;
  }

  function fmtNumber(value) {
    if (typeof value !== "number") return String(value);
    if (Number.isInteger(value)) return String(value);
    return Math.abs(value) >= 100 ? value.toFixed(1) : String(Number(value.toPrecision(4)));
  }

  function badge(text, kind) {
    return h("span", { class: `badge ${kind || String(text).toLowerCase()}` }, text);
  }

  // A link to a page of the Airflow UI. Inside the UI (this page in its iframe) the parent
  // window navigates, through its own router, instead of nesting Airflow inside the frame.
  function airflowLink(path, text, title) {
    return h("a", { href: `../${path}`, class: "airflow-link", title: title || null, onclick: openInAirflow }, text);
  }

  function openInAirflow(event) {
    if (window.top === window || event.ctrlKey || event.metaKey || event.shiftKey) return;
    try {
      const top = window.top;
      const url = new URL(event.currentTarget.href);
      if (url.origin !== top.location.origin) return;
      event.preventDefault();
      const index = (top.history.state && Number.isInteger(top.history.state.idx)) ? top.history.state.idx + 1 : 0;
      const key = Math.random().toString(36).slice(2, 10);
      top.history.pushState({ usr: null, key, idx: index }, "", url.pathname + url.search + url.hash);
      top.dispatchEvent(new PopStateEvent("popstate", { state: top.history.state }));
    } catch (error) {
      // Another origin: let the browser follow the link inside the frame.
    }
  }

  // -- API ---------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path) {
    const response = await fetch(`api/${path}`, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) {
      let detail = response.statusText;
      try { detail = (await response.json()).detail || detail; } catch (error) { /* not JSON */ }
      throw new ApiError(response.status, `${response.status} ${detail}`);
    }
    return response.json();
  }

  function showStatus(message, kind) {
    const el = clear(document.getElementById("status"));
    el.className = kind || "";
    if (message instanceof Node) el.append(message);
    else el.textContent = message || "";
    el.hidden = !message;
  }

  function showError(error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      showStatus(h("span", {}, "Your Airflow session has expired or may not read this. ",
        h("a", { href: window.location.pathname, onclick: () => window.location.reload() }, "Log in again")), "error");
    } else {
      showStatus(`Could not load the pipelines: ${error.message}`, "error");
    }
  }

  // -- overview ----------------------------------------------------------------------------

  function runCell(run) {
    if (!run) return h("span", { class: "muted" }, "no runs");
    return h("span", {}, badge(run.state || "none"), " ", fmtDate(run.start_date || run.run_after),
      h("br"), h("span", { class: "muted" }, triggerText(run)));
  }

  function triggerText(entry) {
    const record = entry.record || {};
    const who = record.triggered_by || entry.run_type || "";
    const source = entry.trigger_source ? ` via ${entry.trigger_source}` : "";
    const user = record.triggered_by_user || entry.triggering_user_name;
    return `${who}${source}${user ? ` by ${user}` : ""}`;
  }

  function stagesSummary(record) {
    if (!record) return h("span", { class: "muted" }, "–");
    const done = (record.stages_completed || []).length;
    const total = done + (record.stages_failed || []).length + (record.stages_skipped || []).length;
    return h("span", { class: "stages" },
      badge(`${done}/${total} stages`, record.stages_failed && record.stages_failed.length ? "failed" : "success"),
      (record.stages_failed || []).map((name) => [" ", badge(`✗ ${name}`, "failed")]));
  }

  function renderOverview(data) {
    document.getElementById("environment").textContent =
      `environment ${data.environment} · ${data.total_entries} pipeline${data.total_entries === 1 ? "" : "s"}`;
    const body = clear(document.querySelector("#pipelines tbody"));
    for (const p of data.pipelines) {
      const selected = p.name === state.selected;
      const row = h("tr", { class: selected ? "selected" : null, "data-pipeline": p.name },
        h("td", {}, h("a", { href: `#${encodeURIComponent(p.name)}`, class: "pipeline-link" }, p.name),
          p.valid ? null : [" ", badge("invalid spec", "failed")],
          p.is_paused ? [" ", badge("paused", "paused")] : null),
        h("td", {}, p.version || "–"),
        h("td", {}, h("code", {}, p.config_version || "–")),
        h("td", {}, p.environment || "–"),
        h("td", {}, p.schedule ? h("code", {}, p.schedule) : h("span", { class: "muted" }, "manual")),
        h("td", {}, p.owners.join(", ") || "–"),
        h("td", {}, runCell(p.latest_run)),
        h("td", {}, stagesSummary(p.latest_record && p.latest_record.record)),
        h("td", {}, airflowLink(p.dag_path, "Open DAG ↗", `The ${p.name} DAG in Airflow`)));
      body.append(row);
    }
    document.getElementById("overview").hidden = false;
  }

  // -- detail: summary ---------------------------------------------------------------------

  function renderSummary(p) {
    const card = clear(document.getElementById("summary"));
    card.append(
      h("div", { class: "card-head" },
        h("h2", {}, p.name), p.valid ? badge(`v${p.version}`, "info") : badge("invalid spec", "failed"),
        h("span", { class: "spacer" }), airflowLink(p.dag_path, "Open DAG in Airflow ↗")),
      p.description ? h("p", {}, p.description) : null);
    if (!p.valid) {
      card.append(h("pre", { class: "problems" }, p.problems.join("\n")));
      if (p.loader_file) card.append(h("p", { class: "muted" }, "Built by ", h("code", {}, p.loader_file)));
      return;
    }
    const facts = [
      ["Spec version", p.version], ["Config version", h("code", {}, p.config_version)],
      ["Environment", p.environment], ["Schedule", p.schedule ? h("code", {}, p.schedule) : "manual only"],
      ["Owners", p.owners.join(", ")], ["Failure e-mails", p.notify_on_failure.join(", ") || "none"],
      ["Tags", p.tags.join(", ") || "–"],
      ["Thresholds", Object.entries(p.thresholds).map(([k, v]) => `${k} ≥ ${v}`).join(", ") || "none"],
      ["Registry", p.registries.map((r) => r.uri).join(", ") || "none"],
      ["Loader file", p.loader_file ? h("code", {}, p.loader_file) : "–"],
    ];
    card.append(h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])));
    if (p.problems.length) card.append(h("p", { class: "muted" }, p.problems.join(" ")));
    card.append(h("div", { class: "stage-chain" },
      p.stages.map((stage, i) => [i ? h("span", { class: "arrow" }, "→") : null,
        h("span", { class: "stage", title: stage.component }, stage.name)])));
  }

  // -- detail: metric charts ---------------------------------------------------------------

  // Quality metrics: those with a threshold or a baseline next to them (what evaluation
  // components report); without any, every plain metric of every stage.
  function metricSeries(entries, spec) {
    const chronological = entries.filter((e) => e.record && e.record.outputs).slice().reverse();
    const keys = new Map();
    const addKey = (stage, name) => keys.set(`${stage}\u0000${name}`, { stage, name });
    for (const entry of chronological) {
      for (const [stage, out] of Object.entries(entry.record.outputs)) {
        const metrics = (out && out.metrics) || {};
        for (const name of Object.keys(metrics)) {
          if (name.includes(".")) continue;
          if (`threshold.${name}` in metrics || `baseline.${name}` in metrics || name in spec.thresholds) addKey(stage, name);
        }
      }
    }
    if (keys.size === 0) {
      for (const entry of chronological) {
        for (const [stage, out] of Object.entries(entry.record.outputs)) {
          for (const [name, value] of Object.entries((out && out.metrics) || {})) {
            if (!name.includes(".") && typeof value === "number" && keys.size < 8) addKey(stage, name);
          }
        }
      }
    }
    return [...keys.values()].map(({ stage, name }) => ({
      stage,
      name,
      points: chronological.flatMap((entry, index) => {
        const metrics = ((entry.record.outputs[stage] || {}).metrics) || {};
        if (typeof metrics[name] !== "number") return [];
        const threshold = typeof metrics[`threshold.${name}`] === "number" ? metrics[`threshold.${name}`]
          : (typeof spec.thresholds[name] === "number" ? spec.thresholds[name] : null);
        return [{
          index,
          run_id: entry.run_id,
          when: entry.start_date || entry.record.timestamp,
          value: metrics[name],
          baseline: typeof metrics[`baseline.${name}`] === "number" ? metrics[`baseline.${name}`] : null,
          threshold,
          passed: threshold === null ? null : metrics[name] >= threshold,
        }];
      }),
      runs: chronological.length,
      firstRun: chronological.length ? (chronological[0].start_date || chronological[0].record.timestamp) : null,
      lastRun: chronological.length ? (chronological[chronological.length - 1].start_date || chronological[chronological.length - 1].record.timestamp) : null,
    })).filter((series) => series.points.length);
  }

  // 1, 2 or 5 times a power of ten: round axis steps.
  function niceStep(raw) {
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const fraction = raw / power;
    return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * power;
  }

  function chart(series) {
    const W = 380, H = 200, M = { top: 16, right: 16, bottom: 34, left: 52 };
    const values = series.points.flatMap((p) => [p.value, p.threshold, p.baseline]).filter((v) => v !== null);
    let lo = Math.min(...values), hi = Math.max(...values);
    if (lo === hi) { lo -= Math.abs(lo) * 0.1 || 1; hi += Math.abs(hi) * 0.1 || 1; }
    const step = niceStep((hi - lo) / 4);
    lo = Math.floor(lo / step) * step;
    hi = Math.ceil(hi / step) * step;
    if (hi === lo) hi = lo + step;
    const n = Math.max(series.runs, 2);
    const x = (i) => M.left + (series.runs === 1 ? (W - M.left - M.right) / 2 : (i / (n - 1)) * (W - M.left - M.right));
    const y = (v) => M.top + (1 - (v - lo) / (hi - lo)) * (H - M.top - M.bottom);
    const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img",
      "aria-label": `${series.name} over ${series.points.length} runs`, "data-metric": series.name });

    for (let v = lo; v <= hi + step / 2; v += step) {
      svg.append(s("line", { class: "grid", x1: M.left, x2: W - M.right, y1: y(v), y2: y(v) }));
      const label = s("text", { class: "tick", x: M.left - 6, y: y(v) + 4, "text-anchor": "end" });
      label.textContent = String(Number(v.toPrecision(6)));
      svg.append(label);
    }
    const path = (pts, key) => pts.map((p, i) => `${i ? "L" : "M"}${x(p.index).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
    const withBaseline = series.points.filter((p) => p.baseline !== null);
    if (withBaseline.length) svg.append(s("path", { class: "baseline", d: path(withBaseline, "baseline") }));
    const withThreshold = series.points.filter((p) => p.threshold !== null);
    if (withThreshold.length) {
      const first = withThreshold[0], last = withThreshold[withThreshold.length - 1];
      const d = withThreshold.length === 1
        ? `M${M.left},${y(first.threshold)} L${W - M.right},${y(first.threshold)}`
        : `M${M.left},${y(first.threshold)} ` + path(withThreshold, "threshold").replace(/^M/, "L") + ` L${W - M.right},${y(last.threshold)}`;
      svg.append(s("path", { class: "threshold", d }));
      const label = s("text", { class: "threshold-label", x: W - M.right, y: y(last.threshold) - 5, "text-anchor": "end" });
      label.textContent = `threshold ${fmtNumber(last.threshold)}`;
      svg.append(label);
    }
    svg.append(s("path", { class: "metric-line", d: path(series.points, "value") }));
    for (const p of series.points) {
      const dot = s("circle", { class: `point ${p.passed === null ? "" : p.passed ? "pass" : "fail"}`, cx: x(p.index), cy: y(p.value), r: 4 });
      const title = s("title", {});
      title.textContent = `${series.name} = ${fmtNumber(p.value)}` +
        (p.threshold !== null ? ` (threshold ${fmtNumber(p.threshold)}: ${p.passed ? "pass" : "FAIL"})` : "") +
        (p.baseline !== null ? `, baseline ${fmtNumber(p.baseline)}` : "") + `\n${p.run_id}\n${fmtDate(p.when)}`;
      dot.append(title);
      svg.append(dot);
    }
    // The time axis spans every run with a record (a run without the metric leaves a gap).
    const ends = series.runs === 1 ? [[0, series.firstRun, "middle"]] : [[0, series.firstRun, "start"], [series.runs - 1, series.lastRun, "end"]];
    for (const [index, when, anchor] of ends) {
      const label = s("text", { class: "tick", x: x(index), y: H - 12, "text-anchor": anchor });
      label.textContent = fmtDate(when).slice(0, 16);
      svg.append(label);
    }
    return svg;
  }

  function renderCharts(entries, spec) {
    const box = clear(document.getElementById("charts"));
    const all = metricSeries(entries, spec);
    if (!all.length) {
      box.append(h("p", { class: "muted" }, "No metrics recorded yet."));
      return;
    }
    for (const series of all) {
      const last = series.points[series.points.length - 1];
      box.append(h("figure", { class: "chart-card" },
        h("figcaption", {}, h("b", {}, series.name), h("span", { class: "muted" }, ` ${series.stage} · latest ${fmtNumber(last.value)}`),
          last.passed === null ? null : [" ", badge(last.passed ? "pass" : "fail", last.passed ? "success" : "failed")]),
        chart(series),
        h("div", { class: "legend" }, h("span", { class: "key metric" }, "metric"),
          series.points.some((p) => p.threshold !== null) ? h("span", { class: "key threshold" }, "threshold") : null,
          series.points.some((p) => p.baseline !== null) ? h("span", { class: "key baseline" }, "baseline") : null)));
    }
  }

  // -- detail: execution records -----------------------------------------------------------

  function outputsDetails(record) {
    const outputs = record.outputs || {};
    const stages = Object.keys(outputs);
    if (!stages.length && !Object.keys(record.errors || {}).length) return h("span", { class: "muted" }, "–");
    const errors = Object.keys(record.errors || {}).length;
    const label = [stages.length ? `${stages.length} stage output${stages.length === 1 ? "" : "s"}` : null,
      errors ? `${errors} error${errors === 1 ? "" : "s"}` : null].filter(Boolean).join(", ");
    return h("details", {}, h("summary", {}, label),
      h("dl", { class: "outputs" }, stages.map((stage) => [
        h("dt", {}, stage),
        h("dd", {},
          Object.entries(outputs[stage].artifacts || {}).map(([k, v]) => h("div", {}, h("code", {}, k), " ", h("span", { class: "uri" }, v))),
          Object.entries(outputs[stage].metrics || {}).filter(([k]) => !k.includes(".") || k === "all_metrics_passed")
            .map(([k, v]) => h("div", {}, h("code", {}, k), ` = ${fmtNumber(v)}`))),
      ]), Object.entries(record.errors || {}).map(([stage, error]) => [
        h("dt", { class: "error" }, `${stage} (failed)`), h("dd", {}, h("pre", {}, error))])));
  }

  function renderRecords(entries) {
    const box = clear(document.getElementById("records"));
    state.entries = entries;
    const listed = new Set(entries.map((entry) => entry.run_id));
    for (const runId of [...state.picked]) if (!listed.has(runId)) state.picked.delete(runId);
    if (!entries.length) {
      box.append(h("p", { class: "muted" }, "No execution records yet: trigger the DAG, or wait for its schedule."));
      return;
    }
    const rows = entries.map((entry) => {
      const r = entry.record || {};
      const pick = h("input", { type: "checkbox", class: "pick-run", value: entry.run_id,
        "aria-label": `Pick run ${entry.run_id} for comparison`, onchange: onPick });
      pick.checked = state.picked.has(entry.run_id);
      const ran = new Set([...(r.stages_completed || []), ...(r.stages_failed || [])]);
      const durations = Object.entries(r.stage_durations || {}).filter(([k]) => ran.has(k))
        .map(([k, v]) => `${k}: ${fmtSeconds(v)}`).join("\n");
      return h("tr", { "data-run-id": entry.run_id, class: pick.checked ? "picked" : null },
        h("td", { class: "pick" }, pick),
        h("td", {}, airflowLink(entry.run_path, entry.run_id, "This run in Airflow"), h("br"),
          h("span", { class: "muted" }, fmtDate(entry.start_date || r.timestamp)), mlflowLink(r)),
        h("td", {}, badge(entry.state || "none")),
        h("td", {}, r.triggered_by || "–", entry.trigger_source ? h("div", { class: "muted" }, `via ${entry.trigger_source}`) : null,
          r.triggered_by_user ? h("div", { class: "muted" }, `by ${r.triggered_by_user}`) : null),
        h("td", {}, h("code", { title: r.git_commit || "" }, (r.git_commit || "–").slice(0, 10))),
        h("td", { class: "stages" },
          (r.stages_completed || []).map((n) => (r.cached_from || {})[n]
            ? h("span", { class: "badge info", title: `cached: reused from run ${r.cached_from[n]}` }, `↺ ${n}`)
            : badge(`✓ ${n}`, "success")),
          (r.stages_failed || []).map((n) => badge(`✗ ${n}`, "failed")),
          (r.stages_skipped || []).map((n) => badge(`– ${n}`, "skipped"))),
        h("td", { title: durations }, fmtSeconds(entry.duration_seconds),
          durations ? h("div", { class: "muted small" }, durations.split("\n").slice(0, 6).map((line) => h("div", {}, line))) : null),
        h("td", {}, outputsDetails(r)));
    });
    box.append(
      h("div", { class: "compare-bar" },
        h("button", { id: "compare-runs", type: "button", "aria-describedby": "compare-hint", onclick: () => openCompare() }, "Compare"),
        h("span", { id: "compare-hint", class: "muted", "aria-live": "polite" })),
      h("table", { class: "grid records" },
        h("thead", {}, h("tr", {}, h("th", { class: "pick", title: "Tick two runs, then Compare" }, "Pick"),
          ["Run", "State", "Triggered by", "Git commit", "Stages", "Duration", "Outputs"].map((t) => h("th", {}, t)))),
        h("tbody", {}, rows)));
    updateCompareBar();
  }

  // -- detail: sweeps -----------------------------------------------------------------------

  // The sweep tables of the newest record that has sweeps: one per swept stage, each variant a
  // row, the selected one marked. Pure data, so that the rendering below stays a thin layer.
  function sweepTables(entries) {
    const entry = (entries || []).find((e) => e.record && Object.keys(e.record.sweeps || {}).length);
    if (!entry) return [];
    return Object.entries(entry.record.sweeps).map(([stage, sweep]) => {
      const variants = sweep.variants || [];
      const fields = [...new Set(variants.flatMap((v) => Object.keys(v.variant || {})))];
      return {
        stage, run_id: entry.run_id, metric: sweep.metric, mode: sweep.mode, fields,
        selected: sweep.selected === null || sweep.selected === undefined ? null : sweep.selected,
        rows: variants.map((v, index) => ({
          index, label: v.label, values: fields.map((f) => (v.variant || {})[f]),
          value: (v.metrics || {})[sweep.metric], state: v.state, error: v.error || null,
          cached: Boolean(v.cached_from), selected: index === sweep.selected,
        })),
      };
    });
  }

  function renderSweeps(entries) {
    const box = clear(document.getElementById("sweeps"));
    const tables = sweepTables(entries);
    document.getElementById("sweeps-title").hidden = !tables.length;
    for (const table of tables) {
      const best = table.mode === "max" ? "highest" : "lowest";
      box.append(h("section", { class: "sweep", "data-stage": table.stage },
        h("h4", {}, `Sweep of ${table.stage}`, " ", h("span", { class: "muted" },
          `${table.rows.length} variants in run ${table.run_id}; ${best} ${table.metric} wins`)),
        table.selected === null ? h("p", { class: "error" }, "No variant succeeded: the stage failed.") : null,
        h("table", { class: "grid sweep-table" },
          h("thead", {}, h("tr", {}, h("th", {}, "#"), table.fields.map((f) => h("th", {}, f)),
            h("th", {}, table.metric), h("th", {}, "State"), h("th", {}, ""))),
          h("tbody", {}, table.rows.map((row) => h("tr", { class: row.selected ? "selected" : null, "data-index": row.index },
            h("td", {}, String(row.index)),
            row.values.map((value) => h("td", {}, h("code", {}, typeof value === "object" ? JSON.stringify(value) : String(value)))),
            h("td", {}, row.value === undefined ? "–" : fmtNumber(row.value)),
            h("td", { title: row.error || "" }, badge(row.state), row.cached ? h("span", { class: "badge info", title: "taken from the stage cache" }, "↺") : null,
              row.error ? h("div", { class: "muted small" }, row.error.split("\n")[0]) : null),
            h("td", {}, row.selected ? badge("★ selected", "success") : null)))))));
    }
  }

  // -- detail: two runs compared -----------------------------------------------------------

  function onPick(event) {
    const box = event.currentTarget;
    if (box.checked) state.picked.add(box.value);
    else state.picked.delete(box.value);
    box.closest("tr").classList.toggle("picked", box.checked);
    updateCompareBar();
  }

  // The two picked runs, older first: A is the reference, B the run whose changes are shown.
  function pickedPair() {
    const order = state.entries.map((entry) => entry.run_id).filter((runId) => state.picked.has(runId));
    return order.length === 2 ? [order[1], order[0]] : null;
  }

  function updateCompareBar() {
    const button = document.getElementById("compare-runs");
    const hint = document.getElementById("compare-hint");
    if (!button || !hint) return;
    const n = state.picked.size;
    button.disabled = n !== 2;
    hint.textContent = n === 0 ? "Tick two runs to compare them."
      : n === 1 ? "1 run picked: tick one more."
      : n === 2 ? "Compare the older run (A) with the newer one (B)."
      : `${n} runs picked: a comparison takes exactly two.`;
  }

  function closeCompare(returnFocus) {
    state.comparing = null;
    const section = document.getElementById("compare");
    section.hidden = true;
    delete section.dataset.loaded;
    clear(section);
    const button = document.getElementById("compare-runs");
    if (returnFocus && button) button.focus();
  }

  async function openCompare(pair) {
    const [a, b] = pair || pickedPair() || [];
    if (!a || !b) return;
    const pipeline = state.selected;
    const comparing = { pipeline, a, b };
    state.comparing = comparing;
    const section = clear(document.getElementById("compare"));
    delete section.dataset.loaded;
    section.hidden = false;
    section.append(h("p", { class: "muted" }, "Comparing…"));
    const query = `a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`;
    let data;
    try {
      data = await api(`pipelines/${encodeURIComponent(pipeline)}/compare?${query}`);
    } catch (error) {
      if (state.comparing !== comparing) return;
      clear(section).append(h("p", { class: "error" }, `Could not compare the runs: ${error.message}`));
      section.dataset.loaded = "error";
      return;
    }
    if (state.comparing !== comparing) return; // another comparison or pipeline since
    renderCompare(clear(section), data);
    section.dataset.loaded = "true";
    const title = document.getElementById("compare-title");
    title.scrollIntoView({ block: "start" });
    title.focus({ preventScroll: true });
  }

  function fmtValue(value) {
    if (value === null || value === undefined) return h("span", { class: "muted", title: "not set in this run" }, "–");
    return h("code", {}, typeof value === "string" ? value : JSON.stringify(value));
  }

  // b - a, always signed: "+0.0123", "−0.5" (a minus sign, not a hyphen), "±0".
  function fmtDelta(delta) {
    if (delta === 0) return "±0";
    const size = Math.abs(delta);
    const text = Number.isInteger(size) ? String(size) : String(Number(size.toPrecision(4)));
    return `${delta > 0 ? "+" : "\u2212"}${text}`;
  }

  function fmtRelative(a, delta) {
    if (typeof a !== "number" || a === 0 || delta === 0) return null;
    const percent = (delta / Math.abs(a)) * 100;
    return ` (${percent > 0 ? "+" : "\u2212"}${Number(Math.abs(percent).toPrecision(3))} %)`;
  }

  function statusBadge(status, cachedFrom) {
    const kind = { computed: "success", cached: "info", failed: "failed", skipped: "skipped", absent: "none" }[status] || "none";
    return h("span", { class: "status", title: cachedFrom ? `reused from run ${cachedFrom}` : null },
      badge(status, kind), cachedFrom ? h("span", { class: "muted small" }, ` from ${cachedFrom}`) : null);
  }

  // The record's MLflow run, when the run was tracked: a link (http(s) only: the URL comes from
  // a record), or why tracking was skipped.
  function mlflowLink(record) {
    const mlflow = (record.tracking || {}).mlflow;
    if (!mlflow) return null;
    if (mlflow.status === "logged" && /^https?:\/\//.test(mlflow.run_url || "")) {
      return h("div", { class: "small" }, h("a", { href: mlflow.run_url, target: "_blank", rel: "noopener noreferrer",
        class: "mlflow-run", title: "This run in MLflow" }, "MLflow run"));
    }
    if (mlflow.status === "skipped") {
      return h("div", { class: "muted small", title: mlflow.reason || "" }, "MLflow: not logged");
    }
    return null;
  }

  function runFacts(label, entry) {
    const r = entry.record || {};
    return [
      h("dt", {}, `Run ${label}`),
      h("dd", { "data-run": label }, airflowLink(entry.run_path, entry.run_id, "This run in Airflow"), " ",
        badge(entry.state || "none"), " ", h("span", { class: "muted" }, fmtDate(entry.start_date || r.timestamp)), " · config ",
        h("code", {}, r.config_version || "–"), " · commit ", h("code", { title: r.git_commit || "" }, (r.git_commit || "–").slice(0, 10))),
    ];
  }

  function configCell(stage) {
    if (!stage.config.length) return h("p", { class: "muted" }, "No config differences.");
    return h("table", { class: "mini config-diff" },
      h("thead", {}, h("tr", {}, h("th", {}, "Key"), h("th", {}, "A"), h("th", {}, "B"))),
      h("tbody", {}, stage.config.map((d) => h("tr", { "data-key": d.key },
        h("td", {}, h("code", {}, d.key)), h("td", { class: "value-a" }, fmtValue(d.a)), h("td", { class: "value-b" }, fmtValue(d.b))))));
  }

  function artifactsCell(stage, outputsA, outputsB) {
    if (!stage.artifacts.length) return h("p", { class: "muted" }, "No artifacts.");
    return h("ul", { class: "artifact-list" }, stage.artifacts.map((artifact) => {
      const inA = artifact.name in ((outputsA && outputsA.artifacts) || {});
      const inB = artifact.name in ((outputsB && outputsB.artifacts) || {});
      let verdict;
      if (!inA || !inB) verdict = badge(inA ? "only in A" : "only in B", "skipped");
      else if (artifact.same) verdict = badge("same content", "success");
      else if (artifact.a && artifact.b) verdict = badge("differs", "changed");
      else verdict = badge("no digest", "none");
      return h("li", { "data-artifact": artifact.name, "data-same": String(artifact.same),
        title: `A: ${artifact.a || "no digest"}\nB: ${artifact.b || "no digest"}` }, h("code", {}, artifact.name), " ", verdict);
    }));
  }

  function metricsCell(stage) {
    if (!stage.metrics.length) return h("p", { class: "muted" }, "No metrics.");
    return h("table", { class: "mini metric-diff" },
      h("thead", {}, h("tr", {}, h("th", {}, "Metric"), h("th", {}, "A"), h("th", {}, "B"), h("th", {}, "B \u2212 A"))),
      h("tbody", {}, stage.metrics.map((m) => {
        const hasDelta = typeof m.delta === "number";
        const direction = !hasDelta ? "none" : m.delta > 0 ? "up" : m.delta < 0 ? "down" : "zero";
        return h("tr", { "data-metric": m.name, class: direction === "zero" ? "unchanged" : null },
          h("td", {}, h("code", {}, m.name)),
          h("td", {}, m.a === null ? "–" : fmtNumber(m.a)),
          h("td", {}, m.b === null ? "–" : fmtNumber(m.b)),
          h("td", {}, hasDelta
            ? h("span", { class: `delta ${direction}`, "data-delta": String(m.delta) }, fmtDelta(m.delta),
              h("span", { class: "muted small" }, fmtRelative(m.a, m.delta)))
            : h("span", { class: "muted", title: "in one run only" }, "–")));
      })));
  }

  function renderCompare(section, data) {
    const recordA = data.a.record || {}, recordB = data.b.record || {};
    const differing = data.stages.filter((stage) => !stage.same).length;
    const notes = [["A", data.a], ["B", data.b]].filter(([, entry]) => !("configs" in (entry.record || {})))
      .map(([label, entry]) => h("p", { class: "muted small" },
        `Run ${label} (${entry.run_id}) was recorded without stage configs: its config differences cannot be shown.`));
    const swap = () => openCompare([data.b.run_id, data.a.run_id]);
    section.append(h("div", { class: "card compare-card" },
      h("div", { class: "card-head" },
        h("h3", { id: "compare-title", tabindex: "-1" }, "Compare runs"),
        data.same ? badge("identical", "success") : badge(`${differing} of ${data.stages.length} stages differ`, "changed"),
        h("span", { class: "spacer" }),
        h("button", { type: "button", class: "swap", onclick: swap }, "Swap A and B"),
        h("button", { type: "button", class: "close", onclick: () => closeCompare(true) }, "Close")),
      h("dl", { class: "facts compare-runs" }, runFacts("A", data.a), runFacts("B", data.b)),
      notes,
      data.stages.map((stage) => {
        const outputsA = (recordA.outputs || {})[stage.stage], outputsB = (recordB.outputs || {})[stage.stage];
        const cachedA = (recordA.cached_from || {})[stage.stage], cachedB = (recordB.cached_from || {})[stage.stage];
        return h("section", { class: `compare-stage${stage.same ? " same" : ""}`, "data-stage": stage.stage, "aria-label": `Stage ${stage.stage}` },
          h("h4", {}, stage.stage, " ", h("span", { class: "muted small" }, "A "), statusBadge(stage.status[0], cachedA),
            h("span", { class: "muted small" }, " B "), statusBadge(stage.status[1], cachedB), " ",
            stage.same ? badge("same", "success") : badge("differs", "changed")),
          h("div", { class: "compare-grid" },
            h("div", { class: "config" }, h("h5", {}, "Config"), configCell(stage)),
            h("div", { class: "artifacts" }, h("h5", {}, "Artifacts (by content digest)"), artifactsCell(stage, outputsA, outputsB)),
            h("div", { class: "metrics" }, h("h5", {}, "Metrics"), metricsCell(stage))));
      })));
  }

  // -- detail: registry --------------------------------------------------------------------

  function renderRegistry(data) {
    const box = clear(document.getElementById("registry"));
    if (!data.models.length) {
      box.append(h("p", { class: "muted" }, "This pipeline registers no model."));
      return;
    }
    for (const model of data.models) {
      const head = h("div", { class: "registry-head" }, h("b", {}, model.model_name), " ", h("span", { class: "uri" }, model.uri), " ",
        model.alias_version !== null ? badge(`${model.alias} → v${model.alias_version}`, "success") : badge(`no ${model.alias} version`, "skipped"));
      const section = h("div", { class: "registry-model", "data-uri": model.uri }, head);
      if (model.error) section.append(h("p", { class: "error" }, `Could not read the registry: ${model.error}`));
      else if (!model.versions.length) section.append(h("p", { class: "muted" }, "No versions registered yet."));
      else {
        section.append(h("table", { class: "grid registry" },
          h("thead", {}, h("tr", {}, ["Version", "Created", "Run", "Metrics", ""].map((t) => h("th", {}, t)))),
          h("tbody", {}, model.versions.map((v) => h("tr", { class: v.version === model.alias_version ? "aliased" : null },
            h("td", {}, `v${v.version}`),
            h("td", {}, fmtDate(v.created_at)),
            h("td", {}, h("code", {}, v.run_id || "–")),
            h("td", {}, Object.entries(v.metrics).filter(([k]) => !k.includes(".") && (k.includes("@") || k === "coverage" || k in v.thresholds))
              .map(([k, val]) => h("span", { class: "metric-pill" }, `${k} ${fmtNumber(val)}`))),
            h("td", {}, v.version === model.alias_version ? badge(model.alias, "success") : null))))));
        if (model.total_versions > model.versions.length) {
          section.append(h("p", { class: "muted" }, `Showing the newest ${model.versions.length} of ${model.total_versions} versions.`));
        }
      }
      box.append(section);
    }
  }

  // -- flow --------------------------------------------------------------------------------

  async function loadDetail(name) {
    if (state.pickedFor !== name) { // picks and comparisons belong to one pipeline
      state.picked = new Set();
      state.pickedFor = name;
      closeCompare(false);
    }
    const spec = state.pipelines.find((p) => p.name === name);
    const detail = document.getElementById("detail");
    if (!spec) { detail.hidden = true; return; }
    renderSummary(spec);
    detail.hidden = false;
    for (const id of ["charts", "records", "sweeps", "registry"]) clear(document.getElementById(id)).append(h("p", { class: "muted" }, "Loading…"));
    const encoded = encodeURIComponent(name);
    const [records, registry] = await Promise.all([api(`pipelines/${encoded}/records?limit=100`), api(`pipelines/${encoded}/registry`)]);
    if (state.selected !== name) return;
    renderCharts(records.records, spec);
    renderRecords(records.records);
    renderSweeps(records.records);
    renderRegistry(registry);
  }

  async function refresh() {
    try {
      const data = await api("pipelines");
      state.pipelines = data.pipelines;
      const wanted = decodeURIComponent(window.location.hash.slice(1));
      // Without a choice in the URL: the first pipeline that has run, else the first valid one.
      const first = data.pipelines.find((p) => p.valid && p.latest_run) || data.pipelines.find((p) => p.valid) || data.pipelines[0];
      state.selected = data.pipelines.some((p) => p.name === wanted) ? wanted : (first || {}).name || null;
      renderOverview(data);
      showStatus(data.pipelines.length ? "" : "No pipelines you may read: no DAG tagged mlpipe has been parsed yet, or none is yours to read.");
      if (state.selected) await loadDetail(state.selected);
      document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
      document.body.dataset.loaded = "true";
    } catch (error) {
      showError(error);
      document.body.dataset.loaded = "error";
    }
  }

  // Under Node (the page's tests), hand over the pure functions instead of starting the page.
  if (typeof window === "undefined") {
    module.exports = { sweepTables };
    return;
  }

  window.addEventListener("hashchange", () => {
    state.selected = decodeURIComponent(window.location.hash.slice(1));
    for (const row of document.querySelectorAll("#pipelines tbody tr")) {
      row.classList.toggle("selected", row.dataset.pipeline === state.selected);
    }
    loadDetail(state.selected).catch(showError);
  });

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("refresh").addEventListener("click", refresh);
    document.getElementById("compare").addEventListener("keydown", (event) => {
      if (event.key === "Escape") closeCompare(true);
    });
    refresh();
    state.timer = window.setInterval(refresh, REFRESH_MS);
  });
})();
