// Needle pen operator console. Plain JavaScript, no build step; needled embeds and serves it.
//
// Everything goes through the needled HTTP API with the operator's bearer token:
//  - GET /v1/console/config once after login (areas, checklist, limits, who we are);
//  - GET /v1/telemetry as a server-sent event stream, read with fetch() because
//    EventSource cannot send an Authorization header;
//  - GET /v1/status every second (session, cartridge and its budget);
//  - the session, fault and sim endpoints for every button.
// Refusals are shown with the API's own code and message; the console never decides what is
// allowed, it only hides buttons that cannot apply to the session's state.

const TOKEN_KEY = "needled.console.token";
const SESSION_KEY = "needled.console.session";
const OPERATOR_KEY = "needled.console.operator";
const PLOT_WINDOW_S = 60;
const STATUS_EVERY_MS = 1000;
const PLOT_EVERY_MS = 250;
const CONNECT_TIMEOUT_MS = 10000;

const FAULT_TEXT = {
  estop: "E-stop pressed",
  cartridge_removed: "Cartridge removed while armed or running",
  stroke_stall: "Stroke stall: the needle motor stopped or ran far below its setpoint",
  over_current: "Motor over-current",
  over_temperature: "Motor over-temperature",
  under_voltage: "Supply under-voltage",
  depth_axis_fault: "Depth axis fault: home switch disagrees with position (home again)",
  host_timeout: "Host timeout: the service stopped refreshing the controller",
  sensor_fault: "Sensor fault",
  control_overrun: "Control loop overrun",
};

// What each interlock watches, named so that "OK" reads right.
const INTERLOCK_NAME = {
  estop_pressed: "E-stop",
  cartridge_missing: "Cartridge seated",
  not_homed: "Depth axis homed",
  fault_latched: "No latched fault",
  over_temperature: "Motor temperature",
  under_voltage: "Supply voltage",
};

const STATE_TEXT = {
  Boot: ["Boot", "Depth axis not homed: home it before arming."],
  Homing: ["Homing", "The depth axis is seeking its home switch."],
  Idle: ["Idle", "Homed, motor off."],
  Armed: ["Armed", "Setpoints set, motor off: ready to start."],
  Running: ["▶ Running", "The needle motor is running."],
  Paused: ["❚❚ Paused", "Armed, motor stopped."],
  Fault: ["⚠ Fault", "Motor off. Clear the fault with a reason once its cause is gone."],
  EStop: ["■ E-stop", "E-stop pressed: motor off."],
};

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- state

const app = {
  token: sessionStorage.getItem(TOKEN_KEY),
  config: null,
  clockSkewMs: 0, // server time minus our time
  telemetry: null,
  status: null,
  session: null, // the session this console follows (SessionRecord)
  sessionId: numberOrNull(sessionStorage.getItem(SESSION_KEY)),
  cartridge: null,
  lastFaultKey: null, // the fault list last drawn (null: draw at the next telemetry)
  link: "off",
  showCreate: false, // the operator asked for a new session after one ended
  plot: null,
  series: { t: [], rate: [], rateSet: [], depth: [], depthSet: [] },
  statusTimer: null,
  plotTimer: null,
  staleTimer: null,
  stream: null, // AbortController of the telemetry fetch
  lastEventAt: 0,
  connectingSince: 0,
  renderQueued: false,
};

function numberOrNull(text) {
  const n = Number.parseInt(text ?? "", 10);
  return Number.isFinite(n) ? n : null;
}

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  if (!app.token) throw new ApiError(401, "unauthorized", "not signed in");
  const headers = { Authorization: `Bearer ${app.token}` };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "unreachable", `cannot reach needled (${e.message})`);
  }
  const text = await res.text();
  let data = text;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON: keep the text */
  }
  if (!res.ok) {
    const err = data && data.error ? data.error : { code: `http_${res.status}`, message: String(text || res.statusText) };
    if (res.status === 401) {
      logout(`Signed out: the service refused the token (${err.message}).`);
    }
    throw new ApiError(res.status, err.code, err.message);
  }
  return data;
}

// ---------------------------------------------------------------- messages

function say(kind, text) {
  const box = $("message");
  box.hidden = false;
  box.className = `message ${kind}`;
  // The time makes a repeated message visibly (and audibly) new.
  box.textContent = `${new Date().toLocaleTimeString([], { hourCycle: "h23" })}: ${text}`;
}

function refused(action, e) {
  if (e instanceof ApiError) {
    say("refused", `Refused (${action}): ${e.message} [${e.code}]`);
  } else {
    say("refused", `Not sent (${action}): ${e.message || e}`);
  }
}

// Runs one operator action: the button shows it is busy, the result or the refusal is
// announced, and the view is refreshed from the API afterwards either way.
async function act(action, button, fn, doneText) {
  if (button) {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
  }
  try {
    await fn();
    say("done", doneText || `Done: ${action}.`);
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) refused(action, e);
  } finally {
    if (button) {
      button.removeAttribute("aria-busy");
      button.disabled = false;
    }
    await refreshStatus();
  }
}

// ---------------------------------------------------------------- formatting

const fmt = {
  um: (v) => (v == null ? "–" : `${Math.round(v)} µm`),
  hz: (mhz) => (mhz == null ? "–" : `${(mhz / 1000).toFixed(1)} Hz`),
  amps: (ma) => (ma == null ? "–" : `${(ma / 1000).toFixed(2)} A`),
  celsius: (mc) => (mc == null ? "–" : `${(mc / 1000).toFixed(1)} °C`),
  volts: (mv) => (mv == null ? "–" : `${(mv / 1000).toFixed(2)} V`),
  percent: (pm) => (pm == null ? "–" : `${(pm / 100).toFixed(1)} %`),
  count: (n) => (n == null ? "–" : Number(n).toLocaleString("en-US")),
  duration(ms) {
    if (ms == null || !Number.isFinite(ms)) return "–";
    const s = Math.max(0, Math.floor(ms / 1000));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = s % 60;
    if (h > 0) return `${h} h ${String(m).padStart(2, "0")} min`;
    if (m > 0) return `${m} min ${String(sec).padStart(2, "0")} s`;
    return `${sec} s`;
  },
  time: (ms) => (ms == null ? "–" : new Date(ms).toLocaleTimeString([], { hourCycle: "h23" })),
  date: (ms) => (ms == null ? "–" : new Date(ms).toISOString().slice(0, 10)),
};

function setText(id, text) {
  const el = $(id);
  if (el.textContent !== text) el.textContent = text;
}

// ---------------------------------------------------------------- login

async function login(token) {
  app.token = token;
  try {
    const config = await api("GET", "/v1/console/config");
    sessionStorage.setItem(TOKEN_KEY, token);
    app.config = config;
    app.clockSkewMs = config.server_time_ms - Date.now();
    showConsole();
    return true;
  } catch (e) {
    app.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    logout(e instanceof ApiError && e.status === 401 ? `Token refused: ${e.message}.` : `Cannot sign in: ${e.message}.`);
    return false;
  }
}

// Back to the login form. `forget` (the Log out button) also forgets the followed session,
// for the next person at a shared tablet; a refused token keeps it for signing in again.
function logout(why, forget = false) {
  app.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  if (forget) rememberSession(null);
  stopLive();
  // Nothing of the last sign-in is shown to the next one.
  Object.assign(app, { config: null, telemetry: null, status: null, session: null, cartridge: null, lastFaultKey: null });
  for (const k of Object.keys(app.series)) app.series[k].length = 0;
  $("message").hidden = true;
  $("main").hidden = true;
  $("logout").hidden = true;
  $("login-view").hidden = false;
  $("who").textContent = "";
  setLink("off", "Not signed in");
  $("login-error").textContent = why || "";
  $("token").value = "";
  $("token").focus();
}

function showConsole() {
  const c = app.config;
  $("login-view").hidden = true;
  $("login-error").textContent = "";
  $("main").hidden = false;
  $("logout").hidden = false;
  const who = c.you.name === c.you.role ? c.you.name : `${c.you.name} (${c.you.role})`;
  $("who").textContent = `Signed in: ${who} · ${c.backend === "sim" ? "simulated rig" : "hardware"}`;
  buildForms(c);
  $("sim-panel").hidden = c.backend !== "sim";
  const tech = c.you.technician;
  $("sim-role-note").textContent = tech ? "" : "They need a technician token: the service refuses them for an operator.";
  $("override").hidden = !tech;
  startLive();
}

function buildForms(c) {
  if (c.stroke) {
    // The rig's configured stroke-rate range: the form offers it, the API enforces it.
    const lo = c.stroke.rate_min_mhz / 1000;
    const hi = c.stroke.rate_max_mhz / 1000;
    $("rate").min = String(lo);
    $("rate").max = String(hi);
    setText("rate-hint", `${lo} to ${hi} Hz`);
  }
  const area = $("area");
  area.replaceChildren(new Option("Choose an area…", ""));
  for (const a of c.areas) area.add(new Option(`${a.name} (depth up to ${a.max_depth_um} µm)`, a.name));
  const list = $("checklist");
  list.querySelectorAll("label").forEach((l) => l.remove());
  for (const item of c.checklist) {
    const label = checkboxLabel(item, "check");
    if (!item.required) {
      const opt = document.createElement("span");
      opt.className = "req";
      opt.textContent = "(optional)";
      label.append(" ", opt);
    }
    list.append(label);
  }
  // The session's operator is the token's person; this field is only what they state
  // (kept as `stated_operator`), prefilled with their name.
  $("operator").value = sessionStorage.getItem(OPERATOR_KEY) || c.you.name;
  const interlocks = $("interlocks");
  interlocks.replaceChildren();
  for (const i of c.interlocks) {
    const li = document.createElement("li");
    li.id = `interlock-${i.code}`;
    li.dataset.reason = i.reason;
    li.dataset.name = INTERLOCK_NAME[i.code] ?? i.code;
    li.className = "";
    interlocks.append(li);
  }
}

// ---------------------------------------------------------------- telemetry over fetch()

function setLink(kind, text) {
  app.link = kind;
  const el = $("link");
  el.className = `link link-${kind}`;
  if (el.textContent !== text) el.textContent = text;
  const stale = $("stale");
  const live = $("live");
  if (kind === "lost") {
    stale.hidden = false;
    stale.textContent = `Live data lost: the values below are stale. ${text}`;
    live.classList.add("stale");
  } else if (kind === "live") {
    stale.hidden = true;
    live.classList.remove("stale");
  }
}

// Parses a text/event-stream body (the WHATWG "server-sent events" format) and calls
// onEvent(type, data) for each complete event.
function sseParser(onEvent) {
  let buffer = "";
  let type = "";
  let data = [];
  const line = (text) => {
    if (text === "") {
      if (data.length) onEvent(type || "message", data.join("\n"));
      type = "";
      data = [];
      return;
    }
    if (text.startsWith(":")) return; // a comment: the server's keep-alive
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") type = value;
    else if (field === "data") data.push(value);
  };
  return (chunk) => {
    buffer += chunk;
    for (;;) {
      const m = /\r\n|\r|\n/.exec(buffer);
      if (!m) break;
      // A lone \r at the very end may be the first half of \r\n: wait for more.
      if (m[0] === "\r" && m.index === buffer.length - 1) break;
      line(buffer.slice(0, m.index));
      buffer = buffer.slice(m.index + m[0].length);
    }
  };
}

async function readTelemetry(controller) {
  const res = await fetch("/v1/telemetry", {
    headers: { Authorization: `Bearer ${app.token}`, Accept: "text/event-stream" },
    cache: "no-store",
    signal: controller.signal,
  });
  if (res.status === 401) {
    logout("Signed out: the service refused the token for the telemetry stream.");
    return;
  }
  if (!res.ok || !res.body) throw new Error(`the telemetry stream answered HTTP ${res.status}`);
  app.lastEventAt = Date.now();
  setLink("live", "Live");
  const feed = sseParser((type, data) => {
    if (type !== "telemetry") return;
    try {
      onTelemetry(JSON.parse(data));
    } catch (e) {
      console.error("bad telemetry event", e);
    }
  });
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the service closed the telemetry stream");
    app.lastEventAt = Date.now();
    feed(value);
  }
}

async function telemetryLoop() {
  let attempt = 0;
  while (app.token) {
    const controller = new AbortController();
    app.stream = controller;
    try {
      if (attempt > 0) setLink("lost", `Reconnecting (attempt ${attempt})…`);
      else setLink("connecting", "Connecting…");
      app.connectingSince = Date.now();
      await readTelemetry(controller);
      return; // logged out from inside
    } catch (e) {
      if (!app.token || app.stream !== controller) return;
      // Count attempts from the last time the stream delivered.
      attempt = app.link === "live" ? 1 : attempt + 1;
      const why = controller.signal.aborted ? "no data for a while" : e.message;
      const wait = Math.min(500 * 2 ** Math.min(attempt - 1, 4), 5000);
      setLink("lost", `Telemetry lost (${why}); reconnecting in ${(wait / 1000).toFixed(1)} s…`);
      await new Promise((r) => setTimeout(r, wait));
    }
    if (app.stream !== controller) return; // stopped or restarted meanwhile
  }
}

function startLive() {
  stopLive();
  const period = app.config?.telemetry_period_ms ?? 50;
  const staleAfter = Math.max(3000, period * 4);
  app.staleTimer = setInterval(() => {
    // Silence on a live stream, or a connection attempt that hangs: give up and try again.
    const now = Date.now();
    if (app.link === "live" && now - app.lastEventAt > staleAfter) app.stream?.abort();
    else if (app.link !== "live" && now - app.connectingSince > CONNECT_TIMEOUT_MS) app.stream?.abort();
    renderTimer();
  }, 500);
  app.statusTimer = setInterval(refreshStatus, STATUS_EVERY_MS);
  app.plotTimer = setInterval(drawPlot, PLOT_EVERY_MS);
  ensurePlot();
  refreshStatus();
  telemetryLoop();
}

function stopLive() {
  const stream = app.stream;
  app.stream = null;
  stream?.abort();
  for (const t of ["statusTimer", "plotTimer", "staleTimer"]) {
    clearInterval(app[t]);
    app[t] = null;
  }
}

function onTelemetry(t) {
  const s = app.series;
  const time = t.controller_time_us / 1e6;
  if (s.t.length && time < s.t[s.t.length - 1]) {
    // The controller restarted: its clock began again.
    for (const k of Object.keys(s)) s[k].length = 0;
  }
  s.t.push(time);
  s.rate.push(t.rate.measured_mhz / 1000);
  s.rateSet.push(t.rate.setpoint_mhz / 1000);
  s.depth.push(t.depth.position_um);
  s.depthSet.push(t.depth.setpoint_um);
  let drop = 0;
  while (drop < s.t.length && s.t[drop] < time - PLOT_WINDOW_S) drop += 1;
  if (drop) for (const k of Object.keys(s)) s[k].splice(0, drop);
  // The session's state follows the controller's (pedal, faults, limits): look at once.
  const previous = app.telemetry;
  if ((t.session ?? null) !== (app.status?.session?.id ?? null) || previous?.state !== t.state) {
    refreshStatus();
  }
  app.telemetry = t;
  if (!app.renderQueued) {
    app.renderQueued = true;
    requestAnimationFrame(() => {
      app.renderQueued = false;
      renderTelemetry();
    });
  }
}

// ---------------------------------------------------------------- rendering

function renderTelemetry() {
  const t = app.telemetry;
  if (!t) return;
  const [name, detail] = STATE_TEXT[t.state] ?? [t.state, ""];
  setText("state", name);
  const faults = t.faults ?? [];
  let stateDetail = detail;
  if (faults.length) stateDetail = `${detail} Latched: ${faults.map((f) => FAULT_TEXT[f] ?? f).join("; ")}.`;
  setText("state-detail", stateDetail);
  const banner = $("state-banner");
  const cls = `state-banner state-${String(t.state).toLowerCase()}`;
  if (banner.className !== cls) banner.className = cls;

  setText("depth-measured", fmt.um(t.depth.position_um));
  setText("depth-setpoint", fmt.um(t.depth.setpoint_um));
  setText("depth-ceiling", fmt.um(t.depth.ceiling_um));
  setText("rate-measured", fmt.hz(t.rate.measured_mhz));
  setText("rate-setpoint", fmt.hz(t.rate.setpoint_mhz));
  setText("strokes", fmt.count(t.stroke_count));
  setText("current", fmt.amps(t.current_ma));
  setText("duty", fmt.percent(t.duty_permyriad));
  setText("motor", t.motor_enabled ? "enabled" : "off");
  setText("temperature", fmt.celsius(t.temperature_mc));
  setText("supply", fmt.volts(t.supply_mv));
  setText("pedal", t.pedal ? "pressed" : "released");
  setText("sim-pedal-state", t.pedal ? "pressed" : "released");

  renderFaults(faults, t.last_fault);
  const active = new Set((t.interlocks ?? []).map((i) => i.code));
  for (const li of $("interlocks").children) {
    const code = li.id.replace("interlock-", "");
    const blocking = active.has(code);
    const cls2 = blocking ? "blocking" : "ok";
    if (li.className !== cls2) {
      li.className = cls2;
      li.textContent = blocking ? `${li.dataset.name}: blocking, ${li.dataset.reason}` : `${li.dataset.name}: OK`;
    }
  }
  setText("sim-estop-state", active.has("estop_pressed") ? "pressed" : "released");
}

function renderFaults(faults, lastFault) {
  const key = faults.join(",");
  setText("last-fault", lastFault ? `${FAULT_TEXT[lastFault] ?? lastFault} (${lastFault})` : "none");
  if (key === app.lastFaultKey) return;
  app.lastFaultKey = key;
  const list = $("faults");
  list.replaceChildren();
  const alert = $("fault-alert");
  if (!faults.length) {
    const li = document.createElement("li");
    li.className = "ok";
    li.textContent = "None";
    list.append(li);
    alert.hidden = true;
    alert.textContent = "";
    return;
  }
  for (const f of faults) {
    const li = document.createElement("li");
    li.className = "fault";
    li.dataset.code = f;
    li.textContent = `${FAULT_TEXT[f] ?? f} (${f})`;
    list.append(li);
  }
  alert.hidden = false;
  alert.replaceChildren();
  const strong = document.createElement("strong");
  strong.textContent = "⚠ Fault latched, motor off: ";
  alert.append(strong, `${faults.map((f) => `${FAULT_TEXT[f] ?? f} (${f})`).join("; ")}. Clear it with a reason once the cause is gone.`);
}

// One refresh at a time; a request while one is running runs once more after it.
let refreshing = null;
let refreshAgain = false;
function refreshStatus() {
  if (refreshing) {
    refreshAgain = true;
    return refreshing;
  }
  refreshing = (async () => {
    do {
      refreshAgain = false;
      await refreshOnce();
    } while (refreshAgain && app.token);
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

async function refreshOnce() {
  if (!app.token) return;
  try {
    const status = await api("GET", "/v1/status");
    app.status = status;
    if (status.session) {
      app.session = status.session;
      rememberSession(status.session.id);
    } else if (app.sessionId != null) {
      app.session = await api("GET", `/v1/sessions/${app.sessionId}`);
    } else {
      app.session = null;
    }
    app.cartridge = status.cartridge ?? null;
    if (!app.cartridge && app.session?.cartridge_id) {
      app.cartridge = await api("GET", `/v1/cartridges/${encodeURIComponent(app.session.cartridge_id)}`);
    }
  } catch (e) {
    if (e instanceof ApiError && e.status === 404 && app.sessionId != null) {
      rememberSession(null); // a session from another install: forget it
    }
    return;
  }
  if (app.token) {
    renderSession();
    refreshPlan();
  }
}

// ---------------------------------------------------------------- plans, numbing, record

// The session's plan and the subject's history, and the numbing countdown: read again when
// the session or its state changes, the countdown ticks locally from `ready_at_ms`.
async function refreshPlan(force) {
  const s = app.session;
  const key = s ? `${s.id}:${s.state}` : "";
  if (!force && key === app.planKey) return renderNumbing();
  app.planKey = key;
  if (!s) {
    $("plan-panel").hidden = true;
    app.numbingReady = null;
    return;
  }
  try {
    const [numb, plans, report] = await Promise.all([
      api("GET", `/v1/sessions/${s.id}/numbing`),
      api("GET", `/v1/plans?subject_ref=${encodeURIComponent(s.subject_ref)}`),
      api("GET", `/v1/sessions/${s.id}/report`),
    ]);
    app.numbingReady = numb.ready_at_ms;
    app.numbingOffset = numb.ready_at_ms == null ? 0 : numb.ready_at_ms - numb.wait_left_ms - Date.now();
    const p = report.plan;
    setText("s-plan", p ? `session ${p.n} of ${p.total} in plan ${p.plan_id}` + (p.next_window_opens_at_ms ? `; next from ${fmt.date(p.next_window_opens_at_ms)}` : `; plan ${p.plan_status}`) : "none");
    renderPlans(plans.plans);
  } catch {
    app.planKey = ""; // try again on the next refresh
  }
  renderNumbing();
}

function renderNumbing() {
  const ready = app.numbingReady;
  const st = app.session?.state;
  show("numbing", st === "created" || st === "bound");
  if (ready == null) return setText("s-numbing", "not recorded");
  const left = ready - (Date.now() + (app.numbingOffset ?? 0));
  if (left <= 0) return setText("s-numbing", "acted: arming allowed");
  const m = Math.floor(left / 60000);
  const sec = Math.floor((left % 60000) / 1000);
  setText("s-numbing", `arming in ${m}:${String(sec).padStart(2, "0")} (or a technician's override)`);
}

function renderPlans(plans) {
  const view = $("plan-view");
  view.replaceChildren();
  $("plan-panel").hidden = plans.length === 0;
  for (const plan of plans) {
    const h = document.createElement("h3");
    h.textContent = `Plan ${plan.id}: ${plan.status}, ${plan.done} of ${plan.total} done, every ${plan.min_days} to ${plan.max_days} days`;
    const table = document.createElement("table");
    table.className = "plan-history";
    const head = table.insertRow();
    for (const t of ["n", "planned", "status", "date", "strokes", "cartridge", "operator", "outcome"]) {
      const th = document.createElement("th");
      th.textContent = t;
      head.append(th);
    }
    for (const slot of plan.slots) {
      const link = plan.history.find((l) => l.session.id === slot.session_id);
      const s = link?.session;
      const row = table.insertRow();
      const when = s ? fmt.date(s.started_at_ms ?? s.created_at_ms) : slot.n === plan.next_window?.n ? `from ${fmt.date(plan.next_window.opens_at_ms)}` : "";
      for (const t of [
        slot.n,
        `${(slot.planned.depth_um / 1000).toFixed(2)} mm, ${(slot.planned.rate_mhz / 1000).toFixed(0)} Hz`,
        slot.status,
        when,
        s ? s.strokes : "",
        s?.cartridge_id ?? "",
        s?.operator ?? "",
        s ? `${s.state} ${s.end_reason ?? ""}` : "",
      ]) {
        row.insertCell().textContent = String(t);
      }
    }
    view.append(h, table);
  }
}

async function printRecord(button) {
  const id = app.session?.id;
  if (id == null) return;
  // Opened before the fetch, so the browser counts it as the click's window.
  const w = window.open("", "_blank");
  await act("print the record", button, async () => {
    const res = await fetch(`/v1/sessions/${id}/record`, { headers: { Authorization: `Bearer ${app.token}` }, cache: "no-store" });
    if (!res.ok) throw new ApiError(res.status, `http_${res.status}`, res.statusText);
    const html = await res.text();
    if (!w) throw new Error("the browser blocked the record's window");
    w.document.open();
    w.document.write(html);
    w.document.close();
    w.focus();
    w.print();
  }, `Record of session #${id} opened for printing.`);
}

function rememberSession(id) {
  app.sessionId = id;
  if (id == null) sessionStorage.removeItem(SESSION_KEY);
  else sessionStorage.setItem(SESSION_KEY, String(id));
}

const ORDER = ["created", "bound", "armed", "running", "ended"];

function renderSession() {
  const s = app.session;
  const open = s && !["ended", "aborted"].includes(s.state);
  $("create-form").hidden = Boolean(s) && (open || !app.showCreate);
  $("session-card").hidden = !s || (app.showCreate && !open);
  if (!s) {
    renderCartridge();
    renderTimer();
    return;
  }
  setText("s-id", `#${s.id}`);
  setText("s-state", s.state);
  setText("s-operator", s.operator);
  setText("s-subject", s.subject_ref);
  const area = app.config?.areas.find((a) => a.name === s.area);
  setText("s-area", area ? `${s.area} (depth up to ${area.max_depth_um} µm)` : s.area);
  setText("s-end", s.ended_at_ms ? `${fmt.time(s.ended_at_ms)}: ${s.end_reason ?? ""}` : "–");
  setText("depth-hint", area ? `0 to ${area.max_depth_um} µm for ${s.area}` : "0 µm to the area's ceiling");

  const step = s.state === "paused" ? "running" : s.state === "aborted" ? "ended" : s.state;
  const at = ORDER.indexOf(step);
  for (const li of document.querySelectorAll(".steps li")) {
    const i = ORDER.indexOf(li.dataset.step);
    li.className = i < at || (i === at && step === "ended") ? "done" : i === at ? "current" : "";
    if (i === at) li.setAttribute("aria-current", "step");
    else li.removeAttribute("aria-current");
  }

  const st = s.state;
  renderMissingChecklist(s);
  show("bind", st === "created");
  show("start", st === "armed" || st === "paused");
  $("start").textContent = st === "paused" ? "Resume" : "Start";
  show("pause", st === "running");
  $("setpoints-form").hidden = !["bound", "armed", "running", "paused"].includes(st);
  show("arm", st === "bound");
  show("apply", ["armed", "running", "paused"].includes(st));
  $("end-form").hidden = !open;
  $("end").textContent = st === "created" ? "Abort session" : "End session";
  show("new-session", !open);
  renderCartridge();
  renderTimer();
}

// The required checklist items a created or bound session has not confirmed: arming refuses
// until they are, so the card offers them (PUT /v1/sessions/{id}/checklist).
function renderMissingChecklist(s) {
  const missing = ["created", "bound"].includes(s.state)
    ? (app.config?.checklist ?? []).filter((c) => c.required && !s.checklist.some((a) => a.item === c.id && a.confirmed))
    : [];
  $("checklist-form").hidden = missing.length === 0;
  const list = $("checklist-missing");
  const key = `${s.id}:${missing.map((c) => c.id).join(",")}`;
  if (list.dataset.key === key) return; // keep what the operator has ticked
  list.dataset.key = key;
  list.querySelectorAll("label").forEach((l) => l.remove());
  for (const item of missing) list.append(checkboxLabel(item, "missing"));
}

// A checklist item as a labelled checkbox named by its id.
function checkboxLabel(item, prefix) {
  const label = document.createElement("label");
  const box = document.createElement("input");
  box.type = "checkbox";
  box.name = item.id;
  box.id = `${prefix}-${item.id}`;
  label.append(box, ` ${item.text}`);
  return label;
}

function show(id, visible) {
  $(id).hidden = !visible;
}

function renderCartridge() {
  const c = app.cartridge;
  if (!c) {
    setText("cart-id", "none bound");
    setText("cart-lot", "–");
    setText("cart-state", "–");
    setText("cart-left", "–");
    return;
  }
  setText("cart-id", c.id);
  setText("cart-lot", c.lot);
  setText("cart-state", `${c.state.replace("_", " ")}${c.lot_recalled ? ", LOT RECALLED" : ""}`);
  setText("cart-left", `${fmt.duration(c.remaining_run_ms)}, ${fmt.count(c.remaining_strokes)} strokes`);
}

function renderTimer() {
  const s = app.session;
  const limit = app.config?.session?.time_limit_ms;
  const sub = $("timer-sub");
  if (!s || !s.started_at_ms) {
    setText("timer", s ? "not started" : "–");
    setText("timer-sub", `limit ${fmt.duration(limit)}`);
    sub.classList.remove("warn");
    return;
  }
  const end = s.ended_at_ms ?? Date.now() + app.clockSkewMs;
  const used = end - s.started_at_ms;
  setText("timer", fmt.duration(used));
  const left = limit - used;
  const warn = !s.ended_at_ms && left <= (app.config?.session?.warning_before_ms ?? 0);
  setText("timer-sub", s.ended_at_ms ? `ended · limit ${fmt.duration(limit)}` : `${fmt.duration(Math.max(0, left))} left of ${fmt.duration(limit)}`);
  sub.classList.toggle("warn", warn);
}

// ---------------------------------------------------------------- plot (uPlot)

function ensurePlot() {
  if (app.plot || !window.uPlot) return;
  const el = $("plot");
  const width = Math.max(280, el.clientWidth || 600);
  const rateColour = "#0072b2"; // Okabe-Ito blue
  const depthColour = "#d55e00"; // Okabe-Ito vermillion
  const opts = {
    width,
    height: 240,
    pxAlign: 0,
    cursor: { drag: { x: false, y: false } },
    legend: { live: false }, // the readings above carry the live values
    scales: { x: { time: false, range: [-PLOT_WINDOW_S, 0] }, hz: { range: (u, min, max) => [0, Math.max(10, max * 1.15)] }, um: { range: (u, min, max) => [0, Math.max(100, max * 1.15)] } },
    axes: [
      { label: "seconds before now", stroke: "#222", grid: { stroke: "#ddd" }, values: (u, v) => v.map((x) => `${x} s`) },
      { scale: "hz", label: "Rate (Hz)", stroke: rateColour, grid: { stroke: "#e6e6e6" } },
      { scale: "um", label: "Depth (µm)", side: 1, stroke: depthColour, grid: { show: false } },
    ],
    series: [
      { label: "time", value: (u, v) => (v == null ? "–" : `${v.toFixed(1)} s`) },
      { label: "Rate measured", scale: "hz", stroke: rateColour, width: 2.5, value: (u, v) => (v == null ? "–" : `${v.toFixed(1)} Hz`) },
      { label: "Rate setpoint", scale: "hz", stroke: rateColour, width: 1.5, dash: [8, 6], value: (u, v) => (v == null ? "–" : `${v.toFixed(1)} Hz`) },
      { label: "Depth measured", scale: "um", stroke: depthColour, width: 2.5, value: (u, v) => (v == null ? "–" : `${Math.round(v)} µm`) },
      { label: "Depth setpoint", scale: "um", stroke: depthColour, width: 1.5, dash: [8, 6], value: (u, v) => (v == null ? "–" : `${Math.round(v)} µm`) },
    ],
  };
  app.plot = new window.uPlot(opts, [[], [], [], [], []], el);
  new ResizeObserver(() => {
    const w = Math.max(280, el.clientWidth);
    if (app.plot && Math.abs(app.plot.width - w) > 2) app.plot.setSize({ width: w, height: 240 });
  }).observe(el);
}

function drawPlot() {
  ensurePlot();
  const s = app.series;
  if (!app.plot || !s.t.length) return;
  const last = s.t[s.t.length - 1];
  const x = s.t.map((v) => v - last);
  app.plot.setData([x, s.rate.slice(), s.rateSet.slice(), s.depth.slice(), s.depthSet.slice()]);
}

// ---------------------------------------------------------------- actions

function readSetpoints(requireBoth) {
  const depthText = $("depth").value.trim();
  const rateText = $("rate").value.trim();
  const body = {};
  if (depthText !== "") {
    const d = Number(depthText);
    if (!Number.isInteger(d)) throw new Error("enter the depth as a whole number of µm");
    body.depth_um = d;
  }
  if (rateText !== "") {
    const r = Number(rateText);
    if (!Number.isFinite(r)) throw new Error("enter the stroke rate in Hz");
    body.rate_mhz = Math.round(r * 1000);
  }
  if (requireBoth && (body.depth_um === undefined || body.rate_mhz === undefined)) {
    throw new Error("enter both the depth (µm) and the stroke rate (Hz)");
  }
  return body;
}

function sessionPath(suffix) {
  return `/v1/sessions/${app.session.id}${suffix}`;
}

// One sim injection: `what` names the action ("press the E-stop"), `done` its result.
function sim(action, extra, button, what, done, onDone) {
  return act(`sim: ${what}`, button, async () => {
    await api("POST", "/v1/sim/inject", { action, ...extra });
    onDone?.();
  }, `Sim: ${done}.`);
}

async function download(format, button) {
  const id = app.session?.id;
  if (id == null) return;
  await act(`download the ${format.toUpperCase()} report`, button, async () => {
    let res;
    try {
      res = await fetch(`/v1/sessions/${id}/report?format=${format}`, {
        headers: { Authorization: `Bearer ${app.token}` },
        cache: "no-store",
      });
    } catch (e) {
      throw new ApiError(0, "unreachable", `cannot reach needled (${e.message})`);
    }
    if (!res.ok) {
      const body = await res.json().catch(() => null);
      throw new ApiError(res.status, body?.error?.code ?? `http_${res.status}`, body?.error?.message ?? res.statusText);
    }
    const blob = await res.blob();
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = `session-${id}-report.${format}`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30000);
  }, `Report of session #${id} downloaded as ${format.toUpperCase()}.`);
}

function wire() {
  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const token = $("token").value.trim();
    if (!token) {
      $("login-error").textContent = "Enter a token.";
      return;
    }
    $("login-button").disabled = true;
    try {
      await login(token);
    } finally {
      $("login-button").disabled = false;
    }
  });
  $("logout").addEventListener("click", () => logout("Signed out.", true));

  $("create-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const checklist = {};
    for (const box of $("checklist").querySelectorAll("input[type=checkbox]")) checklist[box.name] = box.checked;
    const body = {
      subject_ref: $("subject").value.trim(),
      area: $("area").value,
      checklist,
    };
    // Optional: an empty field is no statement (the API refuses an empty one).
    const stated = $("operator").value.trim();
    if (stated) body.operator = stated;
    const override = $("override-reason").value.trim();
    if (!$("override").hidden && override) body.override_reason = override;
    const planId = Number($("plan-id").value);
    if ($("plan-id").value.trim() && Number.isInteger(planId) && planId > 0) body.plan_id = planId;
    if (stated) sessionStorage.setItem(OPERATOR_KEY, stated);
    else sessionStorage.removeItem(OPERATOR_KEY);
    act("create the session", $("create"), async () => {
      const s = await api("POST", "/v1/sessions", body);
      rememberSession(s.id);
      app.session = s;
      app.showCreate = false;
      $("subject").value = "";
      $("override-reason").value = "";
      $("plan-id").value = "";
      for (const box of $("checklist").querySelectorAll("input[type=checkbox]")) box.checked = false;
    }, "Session created. Seat a cartridge and bind it.");
  });

  $("checklist-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const checklist = {};
    for (const box of $("checklist-missing").querySelectorAll("input[type=checkbox]")) if (box.checked) checklist[box.name] = true;
    act("confirm the checklist", $("confirm-checklist"), async () => {
      if (Object.keys(checklist).length === 0) throw new Error("tick the items you have checked");
      app.session = await api("PUT", sessionPath("/checklist"), { checklist });
      renderSession();
    }, "Checklist items confirmed.");
  });
  $("numbing").addEventListener("click", (e) =>
    act("record numbing applied", e.currentTarget, async () => {
      await api("POST", sessionPath("/numbing"));
      await refreshPlan(true);
    }, "Numbing recorded: arming waits for it to act."),
  );
  $("print-record").addEventListener("click", (e) => printRecord(e.currentTarget));
  $("bind").addEventListener("click", (e) =>
    act("bind the seated cartridge", e.currentTarget, () => api("POST", sessionPath("/cartridge")), "Cartridge bound to the session."),
  );
  $("setpoints-form").addEventListener("submit", (e) => {
    e.preventDefault();
    act("arm", $("arm"), async () => {
      const body = readSetpoints(true);
      await api("POST", sessionPath("/arm"), body);
    }, "Armed. Press Start (or the foot pedal) to run.");
  });
  $("apply").addEventListener("click", (e) =>
    act("change the setpoints", e.currentTarget, async () => {
      const body = readSetpoints(false);
      if (body.depth_um === undefined && body.rate_mhz === undefined) throw new Error("enter a depth, a rate or both");
      await api("PUT", sessionPath("/setpoints"), body);
    }, "Setpoints changed."),
  );
  $("start").addEventListener("click", (e) => act("start", e.currentTarget, () => api("POST", sessionPath("/start")), "Running."));
  $("pause").addEventListener("click", (e) => act("pause", e.currentTarget, () => api("POST", sessionPath("/pause")), "Paused."));
  $("end-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const reason = $("end-reason").value.trim();
    act("end the session", $("end"), () => api("POST", sessionPath("/end"), reason ? { reason } : {}), "Session ended; the cartridge is spent.");
  });
  $("report-json").addEventListener("click", (e) => download("json", e.currentTarget));
  $("report-csv").addEventListener("click", (e) => download("csv", e.currentTarget));
  $("new-session").addEventListener("click", () => {
    app.showCreate = true;
    rememberSession(null);
    app.session = null;
    app.cartridge = null;
    renderSession();
    $("operator").focus();
  });

  $("clear-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const reason = $("clear-reason").value.trim();
    act("clear the faults", $("clear"), async () => {
      await api("POST", "/v1/faults/clear", { reason });
      $("clear-reason").value = "";
    }, "Faults cleared.");
  });
  $("home").addEventListener("click", (e) => act("home the depth axis", e.currentTarget, () => api("POST", "/v1/home"), "Homing the depth axis."));

  $("seat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const hex = $("tag-hex").value.replace(/\s+/g, "");
    const secret = $("chip-secret").value.trim();
    const body = hex ? (secret ? { tag_hex: hex, chip_secret_hex: secret } : { tag_hex: hex }) : {};
    sim("seat_cartridge", body, $("sim-seat"), "seat a cartridge", hex ? "cartridge seated" : "cartridge without a readable tag seated");
  });
  $("sim-seat-new").addEventListener("click", (e) =>
    sim("seat_new_cartridge", {}, e.currentTarget, "seat a new cartridge", "a new sterile cartridge seated"),
  );
  $("sim-pull").addEventListener("click", (e) => sim("pull_cartridge", {}, e.currentTarget, "pull the cartridge", "cartridge pulled"));
  $("sim-estop-press").addEventListener("click", (e) => sim("estop", { pressed: true }, e.currentTarget, "press the E-stop", "E-stop pressed"));
  $("sim-estop-release").addEventListener("click", (e) =>
    sim("estop", { pressed: false }, e.currentTarget, "release the E-stop", "E-stop released"),
  );
  $("sim-jam-on").addEventListener("click", (e) =>
    sim("jam", { on: true }, e.currentTarget, "jam the motor", "motor jammed", () => setText("sim-jam-state", "on (as last sent)")),
  );
  $("sim-jam-off").addEventListener("click", (e) =>
    sim("jam", { on: false }, e.currentTarget, "free the motor", "motor freed", () => setText("sim-jam-state", "off (as last sent)")),
  );
  $("sim-pedal-press").addEventListener("click", (e) => sim("pedal", { pressed: true }, e.currentTarget, "press the pedal", "pedal pressed"));
  $("sim-pedal-release").addEventListener("click", (e) =>
    sim("pedal", { pressed: false }, e.currentTarget, "release the pedal", "pedal released"),
  );
}

// ---------------------------------------------------------------- start

wire();
if (app.token) {
  login(app.token);
} else {
  logout("");
}
