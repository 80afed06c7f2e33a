// Pages of the flyte-state dashboard: the execution list and one execution.
// Both load JSON from /api/ and reload when the server's event stream
// (/api/events) reports a change. The DOM is built with textContent only,
// so values from the state topics are never parsed as HTML.
"use strict";

(function () {
  const PAGE_SIZE = 100;

  // Shortest time between two reloads of the same page, in milliseconds.
  const RELOAD_INTERVAL_MS = 1000;

  // Display order of phases in counts; phases not listed sort after them by name.
  const PHASE_ORDER = [
    "SUCCEEDED", "RECOVERED", "RUNNING", "DYNAMIC_RUNNING", "SUCCEEDING", "INITIALIZING",
    "QUEUED", "WAITING_FOR_RESOURCES", "UNDEFINED", "RETRYABLE_FAILED", "FAILING", "FAILED",
    "TIMED_OUT", "ABORTING", "ABORTED", "SKIPPED",
  ];
  const TERMINAL_PHASES = new Set([
    "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "SKIPPED", "RECOVERED", "RETRYABLE_FAILED",
  ]);

  // --- DOM and formatting helpers -----------------------------------------

  function el(tag, attributes, ...children) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "style") element.style.cssText = value;
      else element.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      element.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return element;
  }

  function formatTime(text) {
    if (!text) return "-";
    const date = new Date(text);
    if (Number.isNaN(date.getTime())) return text;
    return date.toISOString().replace("T", " ").slice(0, 19);
  }

  function formatDuration(seconds) {
    if (seconds === null || seconds === undefined || Number.isNaN(seconds) || seconds < 0) return "-";
    if (seconds < 60) return seconds.toFixed(1) + "s";
    const whole = Math.floor(seconds);
    const hours = Math.floor(whole / 3600);
    const minutes = Math.floor((whole % 3600) / 60);
    const rest = String(whole % 60).padStart(2, "0");
    if (hours > 0) return hours + "h" + String(minutes).padStart(2, "0") + "m" + rest + "s";
    return minutes + "m" + rest + "s";
  }

  // protobuf JSON writes google.protobuf.Duration as a string such as "86s" or "1.5s".
  function durationSeconds(text) {
    return text ? parseFloat(text) : null;
  }

  function phaseRank(phase) {
    const index = PHASE_ORDER.indexOf(phase);
    return index < 0 ? PHASE_ORDER.length : index;
  }

  function sortedPhases(counts) {
    return Object.keys(counts || {}).sort((a, b) => phaseRank(a) - phaseRank(b) || a.localeCompare(b));
  }

  function phaseBadge(phase, inferred) {
    const name = phase || "UNDEFINED";
    return el("span", {
      class: "phase phase-" + name,
      title: inferred ? "Inferred from node or task events; no workflow event yet" : null,
    }, name + (inferred ? " (inferred)" : ""));
  }

  function countsCell(counts, total) {
    const phases = sortedPhases(counts);
    const bar = el("div", { class: "bar-stack", title: phases.map((p) => p + " " + counts[p]).join(", ") });
    for (const phase of phases) {
      bar.append(el("span", { class: "phase-" + phase, style: "flex-grow: " + counts[phase] }));
    }
    const done = phases.filter((p) => TERMINAL_PHASES.has(p)).reduce((sum, p) => sum + counts[p], 0);
    return el("div", { class: "counts" },
      total ? bar : null,
      el("div", { class: "counts-text" },
        total ? done + "/" + total + " done" : "-",
        phases.map((phase) => el("span", { class: "count phase-" + phase }, phase.toLowerCase() + " " + counts[phase]))));
  }

  // Execution keys contain ":" and, with an org, "/": both stay readable in the path.
  function encodeKey(key) {
    return key.split("/").map((part) => encodeURIComponent(part).replace(/%3A/gi, ":")).join("/");
  }

  function executionUrl(key) {
    return "/executions/" + encodeKey(key);
  }

  function executionKeyOf(id) {
    if (!id || !id.project || !id.domain || !id.name) return null;
    const key = id.project + ":" + id.domain + ":" + id.name;
    return id.org ? id.org + "/" + key : key;
  }

  function safeLink(uri, text) {
    try {
      const url = new URL(uri, window.location.href);
      if (url.protocol === "http:" || url.protocol === "https:") {
        return el("a", { href: url.href, target: "_blank", rel: "noopener noreferrer" }, text);
      }
    } catch (error) {
      // Not a URL: show it as text.
    }
    return el("span", { title: uri }, text);
  }

  async function fetchJson(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(body.error || response.status + " " + response.statusText);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  // --- Connection state and live updates -----------------------------------

  // open is null until the event stream connects for the first time.
  const connection = { open: null, ready: true, error: "", loadError: "" };

  function renderBanner() {
    const banner = document.getElementById("banner");
    const live = document.getElementById("live");
    let text = "";
    if (connection.open === false) text = "Lost the connection to the dashboard server; reconnecting.";
    else if (connection.error) text = connection.error;
    else if (connection.loadError) text = connection.loadError;
    else if (!connection.ready) text = "Reading the state topics; the list fills in as records arrive.";
    banner.textContent = text;
    banner.hidden = !text;
    if (connection.open === null) live.textContent = "connecting";
    else if (connection.open) live.textContent = "live";
    else live.textContent = "reconnecting";
    live.className = "live " + (connection.open ? "live-on" : "live-off");
  }

  function connectEvents(onChange) {
    const source = new EventSource("/api/events");
    source.addEventListener("open", () => {
      connection.open = true;
      renderBanner();
      // Changes made while the stream was down are not replayed after a reconnect.
      onChange({ reset: true, executions: [] });
    });
    source.addEventListener("error", () => {
      connection.open = false;
      renderBanner();
    });
    source.addEventListener("status", (event) => {
      const status = JSON.parse(event.data);
      connection.ready = status.ready;
      connection.error = status.error;
      renderBanner();
    });
    source.addEventListener("change", (event) => onChange(JSON.parse(event.data)));
    return source;
  }

  // Returns a function that runs load() soon: never two at once, and at most
  // once per RELOAD_INTERVAL_MS however often it is called.
  function reloader(load) {
    let running = false;
    let queued = false;
    let timer = null;
    let lastStart = 0;

    async function run() {
      timer = null;
      running = true;
      lastStart = Date.now();
      try {
        await load();
        connection.loadError = "";
      } catch (error) {
        connection.loadError = "Loading failed: " + error.message;
      } finally {
        running = false;
        renderBanner();
        if (queued) {
          queued = false;
          request();
        }
      }
    }

    function request() {
      if (running) {
        queued = true;
        return;
      }
      if (timer !== null) return;
      timer = setTimeout(run, Math.max(0, lastStart + RELOAD_INTERVAL_MS - Date.now()));
    }
    return request;
  }

  // --- Execution list --------------------------------------------------------

  function executionsPage() {
    const params = new URLSearchParams(window.location.search);
    const filters = {
      q: params.get("q") || "",
      project: params.get("project") || "",
      domain: params.get("domain") || "",
      phase: params.get("phase") || "",
    };
    let offset = Math.max(0, parseInt(params.get("offset") || "0", 10) || 0);
    const inputs = {
      q: document.getElementById("filter-q"),
      project: document.getElementById("filter-project"),
      domain: document.getElementById("filter-domain"),
      phase: document.getElementById("filter-phase"),
    };
    inputs.q.value = filters.q;

    function query() {
      const result = new URLSearchParams();
      for (const [name, value] of Object.entries(filters)) if (value) result.set(name, value);
      if (offset) result.set("offset", String(offset));
      return result;
    }

    function fillSelect(select, values, selected, allLabel) {
      const options = [el("option", { value: "" }, allLabel)];
      const names = Object.keys(values);
      if (selected && !names.includes(selected)) names.push(selected);
      for (const name of names) {
        options.push(el("option", { value: name, selected: name === selected }, name + " (" + (values[name] || 0) + ")"));
      }
      select.replaceChildren(...options);
      select.value = selected;
    }

    function executionRow(row) {
      let duration = formatDuration(row.duration_seconds);
      if (row.duration_seconds === null && row.started_at && !row.finished) {
        const elapsed = (Date.now() - Date.parse(row.started_at)) / 1000;
        duration = elapsed >= 0 ? "running " + formatDuration(elapsed) : "running";
      }
      return el("tr", { "data-key": row.key },
        el("td", {}, row.project),
        el("td", {}, row.domain),
        el("td", { class: "name" }, el("a", { href: executionUrl(row.key) }, row.name)),
        el("td", {}, phaseBadge(row.phase, row.inferred)),
        el("td", { class: "time" }, formatTime(row.started_at)),
        el("td", { class: "time" }, duration),
        el("td", {}, countsCell(row.node_phase_counts, row.node_count)),
        el("td", {}, countsCell(row.task_phase_counts, row.task_count)));
    }

    async function load() {
      const search = query();
      search.set("limit", String(PAGE_SIZE));
      search.set("offset", String(offset));
      const page = await fetchJson("/api/executions?" + search);
      if (page.total > 0 && offset >= page.total) {
        // The list shrank below this page: show its last page instead.
        offset = Math.floor((page.total - 1) / PAGE_SIZE) * PAGE_SIZE;
        return load();
      }

      document.getElementById("execution-rows").replaceChildren(...page.items.map(executionRow));
      document.getElementById("empty").hidden = page.total > 0;
      fillSelect(inputs.project, page.facets.project, filters.project, "All projects");
      fillSelect(inputs.domain, page.facets.domain, filters.domain, "All domains");
      fillSelect(inputs.phase, page.facets.phase, filters.phase, "All phases");

      const first = page.total ? offset + 1 : 0;
      const last = offset + page.items.length;
      document.getElementById("page-range").textContent =
        first + "–" + last + " of " + page.total.toLocaleString("en") + " executions";
      document.getElementById("page-previous").disabled = offset === 0;
      document.getElementById("page-next").disabled = offset + PAGE_SIZE >= page.total;
    }

    const reload = reloader(load);

    function filtersChanged() {
      for (const name of Object.keys(filters)) filters[name] = inputs[name].value.trim();
      offset = 0;
      const search = query().toString();
      window.history.replaceState(null, "", search ? "?" + search : window.location.pathname);
      reload();
    }

    let typing = null;
    inputs.q.addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(filtersChanged, 250);
    });
    for (const name of ["project", "domain", "phase"]) inputs[name].addEventListener("change", filtersChanged);
    document.getElementById("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      filtersChanged();
    });

    function turnPage(step) {
      offset = Math.max(0, offset + step * PAGE_SIZE);
      const search = query().toString();
      window.history.replaceState(null, "", search ? "?" + search : window.location.pathname);
      reload();
    }
    document.getElementById("page-previous").addEventListener("click", () => turnPage(-1));
    document.getElementById("page-next").addEventListener("click", () => turnPage(1));

    connectEvents(() => reload());
    reload();
  }

  // --- One execution -----------------------------------------------------------

  function fact(name, ...value) {
    return [el("dt", {}, name), el("dd", {}, ...value)];
  }

  function errorText(error) {
    if (!error) return null;
    return el("div", { class: "error" }, (error.code ? error.code + ": " : "") + (error.message || ""));
  }

  // The parent-child forest of the nodes: roots first, each node followed by
  // its task attempts and then its children, in creation order.
  function nodeTree(nodes, tasks) {
    const byId = new Map(nodes.map((node) => [node.node_id, node]));
    const children = new Map();
    const roots = [];
    for (const node of nodes) {
      const parent = node.state.parentNodeId;
      if (parent && parent !== node.node_id && byId.has(parent)) {
        if (!children.has(parent)) children.set(parent, []);
        children.get(parent).push(node);
      } else {
        roots.push(node);
      }
    }
    const tasksByNode = new Map();
    for (const task of tasks) {
      if (!tasksByNode.has(task.node_id)) tasksByNode.set(task.node_id, []);
      tasksByNode.get(task.node_id).push(task);
    }
    for (const list of tasksByNode.values()) {
      list.sort((a, b) => a.task_name.localeCompare(b.task_name) || a.retry_attempt - b.retry_attempt);
    }

    const entries = [];
    const visited = new Set();
    function visit(node, depth) {
      if (visited.has(node.node_id)) return;
      visited.add(node.node_id);
      entries.push({ type: "node", item: node, depth });
      for (const task of tasksByNode.get(node.node_id) || []) entries.push({ type: "task", item: task, depth: depth + 1 });
      for (const child of children.get(node.node_id) || []) visit(child, depth + 1);
    }
    roots.forEach((node) => visit(node, 0));
    // Nodes in a parent cycle, and tasks whose node record is missing.
    nodes.forEach((node) => visit(node, 0));
    for (const [nodeId, list] of tasksByNode) {
      if (!byId.has(nodeId)) list.forEach((task) => entries.push({ type: "task", item: task, depth: 0 }));
    }
    return entries;
  }

  function nodeDetails(node) {
    const state = node.state;
    const execution = state.nodeExecution || {};
    const closure = execution.closure || {};
    const metadata = execution.metadata || {};
    const details = [];
    if (metadata.isParentNode) details.push(el("span", { class: "tag" }, "parent"));
    if (metadata.isDynamic) details.push(el("span", { class: "tag" }, "dynamic"));
    if (metadata.isArray) details.push(el("span", { class: "tag" }, "map"));
    if (state.targetEntity && state.targetEntity.name) {
      details.push(el("span", { class: "tag", title: state.targetEntity.resourceType || "" }, state.targetEntity.name));
    }
    const taskNode = closure.taskNodeMetadata;
    if (taskNode && taskNode.cacheStatus) details.push(el("span", { class: "tag" }, taskNode.cacheStatus));
    const childKey = executionKeyOf((closure.workflowNodeMetadata || {}).executionId);
    if (childKey) {
      details.push(el("span", { class: "child" }, "launched ", el("a", { href: executionUrl(childKey) }, childKey)));
    }
    details.push(errorText(closure.error));
    return details;
  }

  function taskDetails(task) {
    const closure = (task.state.taskExecution || {}).closure || {};
    const details = [];
    const reasons = closure.reasons && closure.reasons.length
      ? closure.reasons
      : closure.reason ? [{ message: closure.reason }] : [];
    if (reasons.length) {
      details.push(el("ul", { class: "reasons" }, reasons.map((reason) =>
        el("li", {}, reason.occurredAt ? formatTime(reason.occurredAt).slice(11) + " " : "", reason.message || ""))));
    }
    if (closure.logs && closure.logs.length) {
      details.push(el("div", { class: "logs" }, closure.logs.map((log) => safeLink(log.uri, log.name || log.uri))));
    }
    const subtasks = (closure.metadata || {}).externalResources || [];
    if (subtasks.length > 1) {
      const counts = {};
      subtasks.forEach((resource) => {
        const phase = resource.phase || "UNDEFINED";
        counts[phase] = (counts[phase] || 0) + 1;
      });
      details.push(el("div", { class: "subtasks" }, subtasks.length + " subtasks: ",
        sortedPhases(counts).map((phase) => phase.toLowerCase() + " " + counts[phase]).join(", ")));
    }
    details.push(errorText(closure.error));
    return details;
  }

  function treeRow(entry) {
    const isNode = entry.type === "node";
    const item = entry.item;
    const record = isNode ? item.state.nodeExecution || {} : item.state.taskExecution || {};
    const closure = record.closure || {};
    let label;
    if (isNode) {
      const spec = (record.metadata || {}).specNodeId;
      label = [el("span", { class: "node-id" }, item.node_id), spec && spec !== item.node_id ? el("span", { class: "muted" }, " (" + spec + ")") : null];
    } else {
      label = [el("span", { class: "task-name" }, item.task_name), el("span", { class: "muted" }, " attempt " + item.retry_attempt)];
    }
    return el("tr", { class: isNode ? "node" : "task", "data-key": item.key },
      el("td", { style: "padding-left: " + (0.5 + entry.depth * 1.4) + "em" }, isNode ? "" : "↳ ", label),
      el("td", {}, phaseBadge(closure.phase)),
      el("td", { class: "time" }, formatTime(closure.startedAt)),
      el("td", { class: "time" }, formatDuration(durationSeconds(closure.duration))),
      el("td", { class: "details" }, isNode ? nodeDetails(item) : taskDetails(item)));
  }

  // Bars from startedAt to startedAt + duration. A record without a duration
  // yet ends at its updatedAt, the newest event time known for it.
  function timeline(workflow, entries) {
    const lanes = [];
    if (workflow) {
      lanes.push({ label: "workflow", depth: 0, closure: workflow.execution.closure || {}, kind: "workflow" });
    }
    for (const entry of entries) {
      const record = entry.type === "node" ? entry.item.state.nodeExecution : entry.item.state.taskExecution;
      const label = entry.type === "node" ? entry.item.node_id : entry.item.task_name + " #" + entry.item.retry_attempt;
      lanes.push({ label, depth: entry.depth, closure: (record || {}).closure || {}, kind: entry.type });
    }

    for (const lane of lanes) {
      const closure = lane.closure;
      lane.start = closure.startedAt ? Date.parse(closure.startedAt) : null;
      const duration = durationSeconds(closure.duration);
      if (lane.start === null) lane.end = null;
      else if (duration !== null) lane.end = lane.start + duration * 1000;
      else {
        lane.end = closure.updatedAt ? Math.max(lane.start, Date.parse(closure.updatedAt)) : lane.start;
        lane.open = true;
      }
    }
    const started = lanes.filter((lane) => lane.start !== null);
    if (!started.length) return [el("p", { class: "empty" }, "Nothing has started yet.")];
    const first = Math.min(...started.map((lane) => lane.start));
    const last = Math.max(...started.map((lane) => lane.end));
    const span = Math.max(last - first, 1000);

    const axis = el("div", { class: "lane axis" }, el("div", { class: "lane-label" }, formatTime(new Date(first).toISOString())),
      el("div", { class: "lane-track" }, [0, 0.25, 0.5, 0.75, 1].map((share) =>
        el("span", { class: "tick", style: "left: " + share * 100 + "%" }, "+" + formatDuration((span * share) / 1000)))));
    const rows = lanes.map((lane) => {
      const track = el("div", { class: "lane-track" });
      if (lane.start !== null) {
        const left = ((lane.start - first) / span) * 100;
        const width = Math.max(((lane.end - lane.start) / span) * 100, 0.4);
        const phase = lane.closure.phase || "UNDEFINED";
        track.append(el("div", {
          class: "bar phase-" + phase + (lane.open ? " open" : ""),
          style: "left: " + left + "%; width: " + width + "%",
          title: lane.label + ": " + phase + ", started " + formatTime(lane.closure.startedAt) +
            ", " + (lane.open ? "running" : formatDuration((lane.end - lane.start) / 1000)),
        }));
      }
      return el("div", { class: "lane lane-" + lane.kind },
        el("div", { class: "lane-label", style: "padding-left: " + lane.depth * 1.2 + "em" }, lane.label), track);
    });
    return [axis, ...rows];
  }

  function executionPage() {
    const section = document.getElementById("execution");
    const key = section.dataset.key;

    function render(data) {
      document.getElementById("not-found").hidden = true;
      const workflow = data.workflow;
      const execution = workflow ? workflow.execution || {} : {};
      const closure = execution.closure || {};
      const summary = data.summary || {};
      document.getElementById("execution-phase").replaceWith(
        Object.assign(phaseBadge(closure.phase || summary.phase, workflow && workflow.inferred), { id: "execution-phase" }));

      const facts = [];
      facts.push(...fact("Started (UTC)", formatTime(closure.startedAt || summary.startedAt)));
      facts.push(...fact("Duration", formatDuration(durationSeconds(closure.duration))));
      facts.push(...fact("Updated (UTC)", formatTime(closure.updatedAt || summary.updatedAt)));
      facts.push(...fact("Nodes", countsCell(summary.nodePhaseCounts || {}, summary.nodeCount || 0)));
      facts.push(...fact("Tasks", countsCell(summary.taskPhaseCounts || {}, summary.taskCount || 0)));
      const launchPlan = (execution.spec || {}).launchPlan;
      if (launchPlan && launchPlan.name) facts.push(...fact("Launch plan", launchPlan.name + (launchPlan.version ? " " + launchPlan.version : "")));
      const parent = ((execution.spec || {}).metadata || {}).parentNodeExecution;
      const parentKey = parent ? executionKeyOf(parent.executionId) : null;
      if (parentKey) facts.push(...fact("Launched by", el("a", { href: executionUrl(parentKey) }, parentKey + " / " + parent.nodeId)));
      if (workflow && workflow.producerId) facts.push(...fact("Cluster", workflow.producerId));
      if (closure.error) facts.push(...fact("Error", errorText(closure.error)));
      document.getElementById("execution-facts").replaceChildren(...facts);

      const entries = nodeTree(data.nodes, data.tasks);
      document.getElementById("node-rows").replaceChildren(...entries.map(treeRow));
      document.getElementById("timeline").replaceChildren(...timeline(workflow, entries));
    }

    async function load() {
      let data;
      try {
        data = await fetchJson("/api/executions/" + encodeKey(key));
      } catch (error) {
        if (error.status === 404) {
          document.getElementById("not-found").hidden = false;
          return;
        }
        throw error;
      }
      render(data);
    }

    const reload = reloader(load);
    connectEvents((change) => {
      if (change.reset || change.executions.includes(key)) reload();
    });
    reload();
  }

  renderBanner();
  const page = document.body.dataset.page;
  if (page === "executions") executionsPage();
  else if (page === "execution") executionPage();
})();
