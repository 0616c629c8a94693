/**
 * The staff console at /console/: sign in, subscribe to channels, watch events live, and be present.
 *
 * Everything here goes through client.js, the same client an application would use, so the console doubles as
 * its live demonstration. Tokens live in this module's memory only (never in storage): a reload signs you out.
 */

import { ConnectionState, RealtimeClient, stableStringify } from "./client.js";

const MAX_LOG_LINES = 500;
/** Fields every event line already shows elsewhere, or that only add noise at a glance (expand to see them). */
const FIELDS_HIDDEN_IN_SUMMARY = new Set(["location_id", "created_at", "updated_at"]);
/** Parameters the page fills from the location picker or the session, not from the generic filter inputs. */
const SCOPE_PARAMS = new Set(["location_id", "location_ids", "user_id"]);

const $ = (testId, root = document) => root.querySelector(`[data-testid="${testId}"]`);

// ---------------------------------------------------------------------------------------------------------------
// Authentication: access + refresh token in memory
// ---------------------------------------------------------------------------------------------------------------

const auth = { username: null, access: null, refresh: null };

/** Raised when the refresh token is gone or refused: the user has to sign in again. */
class SignedOutError extends Error {}

async function postJson(path, body, headers = {}) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json", ...headers },
    body: JSON.stringify(body),
  });
  const payload = await response.json().catch(() => ({}));
  return { response, payload };
}

async function signIn(username, password) {
  const { response, payload } = await postJson("/v1/auth/token", { username, password });
  if (!response.ok) throw new Error(payload.detail || payload.message || `Sign-in failed (${response.status})`);
  Object.assign(auth, { username, access: payload.access, refresh: payload.refresh });
}

/** Exchange the refresh token for a new access token; concurrent callers share one request. */
let refreshing = null;
function refreshAccessToken() {
  if (!refreshing) {
    refreshing = (async () => {
      if (!auth.refresh) throw new SignedOutError("Not signed in");
      const { response, payload } = await postJson("/v1/auth/token/refresh", { refresh: auth.refresh });
      if (!response.ok) throw new SignedOutError("Session expired, please sign in again");
      auth.access = payload.access;
      if (payload.refresh) auth.refresh = payload.refresh; // when the server rotates refresh tokens
      return auth.access;
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

/** GET a JSON API resource with the access token, refreshing it once on 401. */
async function apiGet(path) {
  for (let attempt = 0; attempt < 2; attempt += 1) {
    const response = await fetch(path, { headers: { Authorization: `Bearer ${auth.access}`, Accept: "application/json" } });
    if (response.status === 401 && attempt === 0) {
      await refreshAccessToken();
      continue;
    }
    if (!response.ok) throw new Error(`GET ${path} failed (${response.status})`);
    return response.json();
  }
  throw new Error(`GET ${path} failed`);
}

// ---------------------------------------------------------------------------------------------------------------
// Page state
// ---------------------------------------------------------------------------------------------------------------

const page = {
  client: null,
  channels: new Map(), // name -> channel description from GET /v1/channels
  locations: new Map(), // id -> location
  logs: new Map(), // subscription key -> {panel, paused, held: [], count}
  presencePanels: new Map(), // stableStringify([channel, params]) -> {panel, users: Map}
};

// ---------------------------------------------------------------------------------------------------------------
// Small DOM helpers
// ---------------------------------------------------------------------------------------------------------------

function element(tag, { text, className, testId, attrs } = {}, children = []) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  if (testId) node.dataset.testid = testId;
  for (const [name, value] of Object.entries(attrs ?? {})) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function cloneTemplate(id) {
  return document.getElementById(id).content.firstElementChild.cloneNode(true);
}

function formatTime(isoOrDate) {
  const date = isoOrDate instanceof Date ? isoOrDate : new Date(isoOrDate || Date.now());
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleTimeString([], { hour12: false });
}

function locationName(id) {
  return page.locations.get(id)?.name ?? id;
}

/** "Downtown · statuses: open, preparing" */
function describeParams(params) {
  const parts = [];
  if (params.location_id) parts.push(locationName(params.location_id));
  if (params.location_ids) parts.push(params.location_ids.map(locationName).join(" + "));
  if (params.user_id) parts.push(params.user_id);
  for (const [name, value] of Object.entries(params)) {
    if (SCOPE_PARAMS.has(name)) continue;
    parts.push(`${name}: ${Array.isArray(value) ? value.join(", ") : value}`);
  }
  return parts.join(" · ") || "all";
}

function initials(name) {
  return (name || "?")
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 2)
    .map((word) => word[0].toUpperCase())
    .join("");
}

function setError(testId, message) {
  $(testId).textContent = message || "";
}

function describeError(error) {
  if (error?.code === "unauthorized" && error.frame?.required_permission) {
    return `Not allowed: needs ${error.frame.required_permission}`;
  }
  return error?.code ? `${error.message} (${error.code})` : String(error?.message ?? error);
}

// ---------------------------------------------------------------------------------------------------------------
// Connection state in the header
// ---------------------------------------------------------------------------------------------------------------

function renderConnectionState(state) {
  const pill = $("connection-state");
  pill.dataset.state = state;
  pill.textContent = state;
  const session = page.client?.session;
  $("connection-detail").textContent =
    state === ConnectionState.CONNECTED && session ? session.connection_id ?? "" : "";
  if (state === ConnectionState.CONNECTED) renderSubscriptionList();
}

// ---------------------------------------------------------------------------------------------------------------
// Subscribe form: channels, locations and filters generated from each channel's params JSON schema
// ---------------------------------------------------------------------------------------------------------------

/** Follow $ref and drop the `null` branch of an Optional, so the generator sees the real type. */
function resolveSchema(schema, root) {
  let current = schema ?? {};
  for (let depth = 0; depth < 8; depth += 1) {
    if (current.$ref) {
      const name = current.$ref.split("/").pop();
      current = root.$defs?.[name] ?? root.definitions?.[name] ?? {};
      continue;
    }
    const branches = current.anyOf ?? current.oneOf;
    if (branches) {
      current = branches.find((branch) => branch.type !== "null") ?? {};
      continue;
    }
    break;
  }
  return current;
}

function fillChannelSelects() {
  for (const testId of ["channel-select", "presence-channel"]) {
    const select = $(testId);
    select.replaceChildren();
    for (const channel of page.channels.values()) {
      if (testId === "presence-channel" && channel.scope !== "location") continue;
      select.append(element("option", { text: channel.name, attrs: { value: channel.name } }));
    }
  }
}

function fillLocationChoices() {
  const options = $("location-options");
  options.replaceChildren();
  const presenceLocation = $("presence-location");
  presenceLocation.replaceChildren();
  let first = true;
  for (const location of page.locations.values()) {
    const checkbox = element("input", {
      testId: "location-option",
      attrs: { type: "checkbox", name: "location", value: location.id },
    });
    checkbox.checked = first;
    first = false;
    options.append(
      element("label", { className: "choice" }, [
        checkbox,
        element("span", { text: location.name }),
        element("span", { className: "muted small", text: location.id }),
      ]),
    );
    presenceLocation.append(element("option", { text: location.name, attrs: { value: location.id, title: location.id } }));
  }
  if (page.locations.size === 0) options.append(element("p", { className: "muted small", text: "No locations visible to you." }));
}

/** Build one input per filter parameter of the selected channel. */
function renderFilterFields() {
  const channel = page.channels.get($("channel-select").value);
  const container = $("filter-fields");
  container.replaceChildren();
  $("channel-description").textContent = channel?.description ?? "";
  $("location-picker").hidden = channel?.scope !== "location";
  if (!channel) return;
  const schema = channel.params ?? {};
  const properties = schema.properties ?? {};
  const names = Object.keys(properties).filter((name) => !SCOPE_PARAMS.has(name));
  if (!names.includes("events") && channel.events?.length) names.unshift("events");
  for (const name of names) container.append(renderFilterField(name, resolveSchema(properties[name], schema), channel));
  if (names.length === 0) container.append(element("p", { className: "muted small", text: "This channel has no filters." }));
}

function renderFilterField(name, schema, channel) {
  const itemSchema = schema.type === "array" ? resolveSchema(schema.items, channel.params ?? {}) : null;
  const choices = name === "events" ? channel.events : itemSchema?.enum;
  const label = element("div", { className: "filter", testId: `filter-${name}`, attrs: { "data-param": name } });
  label.append(element("div", { className: "filter-name", text: name.replace(/_/g, " ") }));
  if (schema.type === "boolean") {
    label.dataset.kind = "boolean"; // e.g. kds "ack": ask for acknowledgements
    const box = element("input", { attrs: { type: "checkbox", value: "true" } });
    label.append(element("label", { className: "chip" }, [box, element("span", { text: "yes" })]));
    return label;
  }
  if (choices?.length) {
    label.dataset.kind = "choices";
    const chips = element("div", { className: "chips" });
    for (const choice of choices) {
      const box = element("input", { attrs: { type: "checkbox", value: String(choice) } });
      chips.append(element("label", { className: "chip" }, [box, element("span", { text: String(choice) })]));
    }
    label.append(chips);
    return label;
  }
  const isNumber = schema.type === "integer" || schema.type === "number" || itemSchema?.type === "integer";
  label.dataset.kind = schema.type === "array" ? (isNumber ? "number-list" : "list") : isNumber ? "number" : "text";
  const input = element("input", {
    className: "filter-input",
    attrs: {
      type: schema.type === "array" ? "text" : isNumber ? "number" : "text",
      placeholder: schema.type === "array" ? "comma, separated" : "any",
    },
  });
  label.append(input);
  return label;
}

/** Read the form into a params object the server accepts: only filled filters, one or many locations. */
function readSubscribeParams(channel) {
  const params = {};
  if (channel.scope === "location") {
    const chosen = [...document.querySelectorAll('[data-testid="location-option"]:checked')].map((box) => box.value);
    if (chosen.length === 0) throw new Error("Choose at least one location");
    if (chosen.length === 1) params.location_id = chosen[0];
    else params.location_ids = chosen;
  } else if (channel.scope === "user" && page.client.session?.user_id) {
    params.user_id = page.client.session.user_id;
  }
  for (const field of $("filter-fields").querySelectorAll(".filter")) {
    const name = field.dataset.param;
    if (field.dataset.kind === "choices") {
      const values = [...field.querySelectorAll("input:checked")].map((box) => box.value);
      if (values.length) params[name] = values;
      continue;
    }
    if (field.dataset.kind === "boolean") {
      if (field.querySelector("input").checked) params[name] = true;
      continue;
    }
    const raw = field.querySelector("input").value.trim();
    if (!raw) continue;
    if (field.dataset.kind === "number") params[name] = Number(raw);
    else if (field.dataset.kind === "text") params[name] = raw;
    else {
      const items = raw.split(",").map((item) => item.trim()).filter(Boolean);
      params[name] = field.dataset.kind === "number-list" ? items.map(Number) : items;
    }
  }
  return params;
}

async function handleSubscribe(event) {
  event.preventDefault();
  setError("subscribe-error", "");
  const channel = page.channels.get($("channel-select").value);
  if (!channel) return;
  let params;
  try {
    params = readSubscribeParams(channel);
  } catch (error) {
    setError("subscribe-error", error.message);
    return;
  }
  const button = $("subscribe-submit");
  button.disabled = true;
  try {
    const subscription = await page.client.subscribe(channel.name, params, (frame, sub, ack) => handleEvent(sub, frame, ack), {
      onGap: (gap) => appendNote(gap.subscription, `Gap in ${gap.stream}: events were missed, reload it over REST.`, "warn"),
      onRevoked: (frame, revoked) => handleRevoked(frame, revoked),
    });
    ensureLogPanel(subscription);
    appendNote(subscription, `Subscribed as ${subscription.serverId}.`);
  } catch (error) {
    setError("subscribe-error", describeError(error));
  } finally {
    button.disabled = false;
    renderSubscriptionList();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Event logs, one per subscription
// ---------------------------------------------------------------------------------------------------------------

function ensureLogPanel(subscription) {
  let log = page.logs.get(subscription.key);
  if (log) return log;
  const panel = cloneTemplate("log-panel-template");
  panel.dataset.subscriptionKey = subscription.key;
  panel.dataset.channel = subscription.channel;
  panel.querySelector(".chan-badge").textContent = subscription.channel;
  panel.querySelector(".chan-badge").dataset.channel = subscription.channel;
  panel.querySelector(".log-params").textContent = describeParams(subscription.params);
  log = { panel, paused: false, held: [], count: 0, subscription };
  $("log-pause", panel).addEventListener("click", () => togglePause(log));
  $("log-clear", panel).addEventListener("click", () => {
    $("event-log-lines", panel).replaceChildren();
    log.held = [];
    updateLogHeader(log);
  });
  page.logs.set(subscription.key, log);
  $("log-area").prepend(panel);
  updateLogHeader(log);
  updateEmptyState();
  return log;
}

function togglePause(log) {
  log.paused = !log.paused;
  $("log-pause", log.panel).textContent = log.paused ? "Resume" : "Pause";
  log.panel.classList.toggle("is-paused", log.paused);
  if (!log.paused) {
    for (const line of log.held) insertLine(log, line);
    log.held = [];
  }
  updateLogHeader(log);
}

function updateLogHeader(log) {
  $("event-count", log.panel).textContent = `${log.count} event${log.count === 1 ? "" : "s"}`;
  const status = log.panel.querySelector(".log-status");
  const subscriptionStatus = log.subscription.status;
  status.dataset.status = subscriptionStatus;
  status.textContent = log.paused ? `paused · ${log.held.length} held` : subscriptionStatus;
}

function insertLine(log, line) {
  const lines = $("event-log-lines", log.panel);
  lines.prepend(line); // newest first: what just happened is always at the top, no scroll jumps
  while (lines.childElementCount > MAX_LOG_LINES) lines.lastElementChild.remove();
}

/** "order_id ord-1 · type takeout · total 18.75" as key/value spans, skipping empty and repeated fields. */
function renderDataSummary(target, data) {
  target.replaceChildren();
  const changedStatus = data?.previous_status && data.status ? `${data.previous_status} → ${data.status}` : null;
  for (const [key, value] of Object.entries(data ?? {})) {
    if (FIELDS_HIDDEN_IN_SUMMARY.has(key) || value === null || value === undefined || value === "") continue;
    if (key === "previous_status" && changedStatus) continue;
    let shown = typeof value === "object" ? JSON.stringify(value) : String(value);
    if (key === "status" && changedStatus) shown = changedStatus;
    target.append(
      element("span", { className: "kv" }, [element("span", { className: "k", text: key }), element("span", { className: "v", text: shown })]),
    );
  }
}

function buildEventLine(frame) {
  const payload = element("code", { className: "evt-payload" });
  renderDataSummary(payload, frame.data);
  const line = element("li", { className: "log-line", testId: "event-line", attrs: { "data-event": frame.event } }, [
    element("time", { text: formatTime(frame.timestamp), attrs: { datetime: frame.timestamp ?? "" } }),
    element("span", { className: "evt-name", text: frame.event, attrs: { "data-kind": frame.event.split(".").pop() } }),
    element("span", { className: "evt-where", text: frame.location_id ? locationName(frame.location_id) : frame.user_id ?? "" }),
    element("span", { className: "evt-seq", text: `#${frame.seq ?? "?"}`, attrs: { title: `${frame.stream} epoch ${frame.epoch}` } }),
    payload,
  ]);
  line.dataset.eventId = frame.event_id ?? "";
  line.title = "Click to show the whole frame";
  line.addEventListener("click", () => {
    if (line.classList.toggle("is-expanded")) payload.textContent = JSON.stringify(frame, null, 2);
    else renderDataSummary(payload, frame.data);
  });
  return line;
}

function handleEvent(subscription, frame, ack) {
  if (frame.redelivery !== undefined && markRedelivery(frame)) return;
  appendEvent(subscription, frame, ack);
  if (frame.redelivery !== undefined) markRedelivery(frame); // its first copy was cleared, or came before a reload
  if (frame.event === "kds.ticket_unacknowledged") markUnacknowledged(frame.data?.ticket_id);
}

function appendEvent(subscription, frame, ack) {
  const log = ensureLogPanel(subscription);
  log.count += 1;
  const line = buildEventLine(frame);
  if (ack) attachAckState(line, frame, ack);
  if (log.paused) log.held.push(line);
  else insertLine(log, line);
  updateLogHeader(log);
  renderSubscriptionCounts();
}

// ---------------------------------------------------------------------------------------------------------------
// Acknowledged KDS tickets (issue 16): each ticket of an ack subscription shows pending / acked / redelivery n /
// unacknowledged (the managers' kds.ticket_unacknowledged alert, when this console also receives notifications)
// ---------------------------------------------------------------------------------------------------------------

const MAX_ACK_ENTRIES = 2000;
const ackEntries = new Map(); // event_id -> {badge, button, ticketId, state}

function setAckState(entry, state, text = state) {
  if (entry.state === "acked" && state !== "acked") return; // an ack is final; later news cannot undo it
  entry.state = state;
  entry.badge.dataset.state = state;
  entry.badge.textContent = text;
  entry.button.hidden = state === "acked";
}

function attachAckState(line, frame, ack) {
  const badge = element("span", { className: "ack-state", testId: "ack-state", text: "pending", attrs: { "data-state": "pending" } });
  const button = element("button", { className: "ack-button", testId: "ack-button", text: "Ack", attrs: { type: "button" } });
  const entry = { badge, button, ticketId: frame.data?.ticket_id ?? null, state: "pending" };
  button.addEventListener("click", async (event) => {
    event.stopPropagation(); // not a click on the line (which expands it)
    button.disabled = true;
    try {
      const response = await ack();
      setAckState(entry, "acked", response.duplicate ? "acked (already)" : "acked");
    } catch (error) {
      setAckState(entry, "failed", `ack failed: ${error.code ?? error.message}`);
    } finally {
      button.disabled = false;
    }
  });
  line.classList.add("has-ack");
  line.append(element("span", { className: "ack-cell" }, [badge, button]));
  ackEntries.set(frame.event_id, entry);
  while (ackEntries.size > MAX_ACK_ENTRIES) ackEntries.delete(ackEntries.keys().next().value);
}

/** A resend of a ticket shown already: say so on its line instead of adding another. */
function markRedelivery(frame) {
  const entry = ackEntries.get(frame.event_id);
  if (!entry) return false;
  setAckState(entry, "redelivery", `redelivery ${frame.redelivery}`);
  return true;
}

function markUnacknowledged(ticketId) {
  if (!ticketId) return;
  for (const entry of ackEntries.values()) {
    if (entry.ticketId === ticketId) setAckState(entry, "unacknowledged");
  }
}

function appendNote(subscription, text, tone = "info") {
  const log = page.logs.get(subscription.key);
  if (!log) return;
  insertLine(
    log,
    element("li", { className: `log-line log-note tone-${tone}`, testId: "event-note" }, [
      element("time", { text: formatTime(new Date()) }),
      element("span", { className: "note-text", text }),
    ]),
  );
}

function handleRevoked(frame, subscription) {
  const log = page.logs.get(subscription.key);
  if (log) {
    appendNote(subscription, `Revoked by the server: ${frame.reason ?? "no reason given"}.`, "error");
    updateLogHeader(log);
  }
  renderSubscriptionList();
}

function removeLog(subscription) {
  const log = page.logs.get(subscription.key);
  if (!log) return;
  log.panel.remove();
  page.logs.delete(subscription.key);
  updateEmptyState();
}

// ---------------------------------------------------------------------------------------------------------------
// Active subscriptions list
// ---------------------------------------------------------------------------------------------------------------

function renderSubscriptionList() {
  if (!page.client) return;
  const list = $("subscription-list");
  list.replaceChildren();
  const subscriptions = page.client.subscriptions.filter((s) => s.status !== "pending");
  for (const subscription of subscriptions) {
    const button = element("button", {
      className: "btn btn-small btn-danger",
      testId: "unsubscribe-button",
      text: "Unsubscribe",
      attrs: { type: "button" },
    });
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await subscription.unsubscribe();
      } catch (error) {
        setError("subscribe-error", describeError(error));
      }
      removeLog(subscription);
      renderSubscriptionList();
    });
    list.append(
      element(
        "li",
        {
          className: "sub-item",
          testId: "subscription-item",
          attrs: { "data-key": subscription.key, "data-channel": subscription.channel, "data-status": subscription.status },
        },
        [
          element("div", { className: "sub-main" }, [
            element("span", { className: "chan-badge", text: subscription.channel, attrs: { "data-channel": subscription.channel } }),
            element("span", { className: "sub-params", text: describeParams(subscription.params) }),
          ]),
          element("div", { className: "sub-meta" }, [
            element("span", { className: "sub-status", text: subscription.status, attrs: { "data-status": subscription.status } }),
            element("span", { className: "sub-id", testId: "subscription-server-id", text: subscription.serverId ?? "—" }),
            element("span", { className: "sub-events", testId: "subscription-events", text: `${subscription.eventCount} ev` }),
            button,
          ]),
        ],
      ),
    );
  }
  $("subscription-count").textContent = String(subscriptions.length);
  $("subscription-empty").hidden = subscriptions.length > 0;
  for (const log of page.logs.values()) updateLogHeader(log);
}

function renderSubscriptionCounts() {
  for (const item of document.querySelectorAll('[data-testid="subscription-item"]')) {
    const subscription = page.client.subscriptions.find((s) => s.key === item.dataset.key);
    if (subscription) $("subscription-events", item).textContent = `${subscription.eventCount} ev`;
  }
}

function updateEmptyState() {
  $("empty-state").hidden = page.logs.size > 0 || page.presencePanels.size > 0;
}

// ---------------------------------------------------------------------------------------------------------------
// Presence
// ---------------------------------------------------------------------------------------------------------------

function presenceKey(channel, locationId) {
  return stableStringify([channel, { location_id: locationId }]);
}

function ensurePresencePanel(channel, locationId) {
  const key = presenceKey(channel, locationId);
  let entry = page.presencePanels.get(key);
  if (entry) return entry;
  const panel = cloneTemplate("presence-panel-template");
  panel.dataset.channel = channel;
  panel.dataset.location = locationId;
  panel.querySelector(".chan-badge").textContent = channel;
  panel.querySelector(".chan-badge").dataset.channel = channel;
  panel.querySelector(".presence-where").textContent = `${locationName(locationId)} · who is here`;
  entry = { panel, users: new Map(), channel, locationId };
  $("presence-leave", panel).addEventListener("click", async () => {
    page.presencePanels.delete(key);
    panel.remove();
    updateEmptyState();
    try {
      await page.client.presenceLeave(channel, { location_id: locationId });
    } catch (error) {
      setError("presence-error", describeError(error));
    }
  });
  page.presencePanels.set(key, entry);
  $("presence-area").append(panel);
  updateEmptyState();
  return entry;
}

function renderPresence(entry) {
  const list = $("presence-list", entry.panel);
  list.replaceChildren();
  const users = [...entry.users.values()].sort((a, b) => String(a.joined_at).localeCompare(String(b.joined_at)));
  const me = page.client?.session?.user_id;
  for (const user of users) {
    const name = user.user_info?.name || user.user_id;
    list.append(
      element("li", { className: "presence-user", testId: "presence-user", attrs: { "data-user-id": user.user_id } }, [
        element("span", { className: "avatar", text: initials(name), attrs: { "aria-hidden": "true" } }),
        element("span", { className: "presence-name", text: user.user_id === me ? `${name} (you)` : name }),
        element("span", { className: "role", text: user.user_info?.role ?? "" }),
        element("span", { className: "muted small", text: user.joined_at ? `since ${formatTime(user.joined_at)}` : "" }),
      ]),
    );
  }
  $("presence-count", entry.panel).textContent = String(users.length);
}

function handlePresenceFrame(frame) {
  const locationId = frame.location_id ?? frame.params?.location_id;
  const entry = page.presencePanels.get(presenceKey(frame.channel, locationId));
  if (!entry) return; // presence of a place this page did not join
  const activity = $("presence-activity", entry.panel);
  if (frame.event === "sync") {
    entry.users = new Map((frame.users ?? []).map((user) => [user.user_id, user]));
  } else if (frame.event === "user_joined" && frame.data) {
    entry.users.set(frame.data.user_id, frame.data);
    activity.textContent = `${formatTime(new Date())} ${frame.data.user_info?.name ?? frame.data.user_id} joined`;
  } else if (frame.event === "user_left" && frame.data) {
    const name = entry.users.get(frame.data.user_id)?.user_info?.name ?? frame.data.user_info?.name ?? frame.data.user_id;
    entry.users.delete(frame.data.user_id);
    activity.textContent = `${formatTime(new Date())} ${name} left`;
  }
  renderPresence(entry);
}

async function handlePresenceJoin(event) {
  event.preventDefault();
  setError("presence-error", "");
  const channel = $("presence-channel").value;
  const locationId = $("presence-location").value;
  const userInfo = { name: $("presence-name").value.trim() || auth.username };
  const role = $("presence-role").value.trim();
  if (role) userInfo.role = role;
  if (!channel || !locationId) return;
  const entry = ensurePresencePanel(channel, locationId);
  try {
    await page.client.presenceJoin(channel, { location_id: locationId }, userInfo);
  } catch (error) {
    page.presencePanels.delete(presenceKey(channel, locationId));
    entry.panel.remove();
    updateEmptyState();
    setError("presence-error", describeError(error));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Start, sign in, sign out
// ---------------------------------------------------------------------------------------------------------------

async function startSession() {
  const [channels, locations] = await Promise.all([apiGet("/v1/channels"), apiGet("/v1/locations")]);
  page.channels = new Map((channels.channels ?? []).map((channel) => [channel.name, channel]));
  page.locations = new Map((locations.locations ?? []).map((location) => [location.id, location]));
  fillChannelSelects();
  fillLocationChoices();
  renderFilterFields();
  $("presence-name").value = auth.username ? auth.username[0].toUpperCase() + auth.username.slice(1) : "";

  const client = new RealtimeClient({
    token: auth.access,
    getToken: async () => {
      try {
        return await refreshAccessToken();
      } catch (error) {
        if (error instanceof SignedOutError) {
          signOut(error.message);
          return null;
        }
        throw error;
      }
    },
    reconnectMaxDelayMs: 10_000,
  });
  page.client = client;
  window.realtimeConsole = { client, page }; // for debugging in devtools and for the browser tests
  client.on("state", renderConnectionState);
  client.on("subscription", () => renderSubscriptionList());
  client.onPresence(handlePresenceFrame);
  client.on("error", (error) => {
    if (client.state === ConnectionState.CLOSED) $("connection-detail").textContent = describeError(error);
  });
  client.on("connected", (frame) => {
    $("current-user").textContent = `${auth.username} · ${frame.user_id}`;
  });
  renderConnectionState(client.state);
  await client.connect();
}

function showView(signedIn) {
  $("login-view").hidden = signedIn;
  $("app-view").hidden = !signedIn;
  $("current-user").hidden = !signedIn;
  $("sign-out").hidden = !signedIn;
}

function signOut(message = "") {
  page.client?.destroy();
  page.client = null;
  Object.assign(auth, { username: null, access: null, refresh: null });
  for (const log of page.logs.values()) log.panel.remove();
  for (const entry of page.presencePanels.values()) entry.panel.remove();
  page.logs.clear();
  page.presencePanels.clear();
  $("subscription-list").replaceChildren();
  renderConnectionState(ConnectionState.CLOSED);
  showView(false);
  setError("login-error", message);
}

async function handleSignIn(event) {
  event.preventDefault();
  setError("login-error", "");
  const button = $("login-submit");
  button.disabled = true;
  try {
    await signIn($("login-username").value.trim(), $("login-password").value);
    $("login-password").value = "";
    showView(true);
    $("current-user").textContent = auth.username;
    await startSession();
  } catch (error) {
    if (!page.client) showView(false);
    setError(page.client ? "subscribe-error" : "login-error", describeError(error));
  } finally {
    button.disabled = false;
  }
}

function main() {
  $("login-form").addEventListener("submit", handleSignIn);
  $("subscribe-form").addEventListener("submit", handleSubscribe);
  $("presence-form").addEventListener("submit", handlePresenceJoin);
  $("channel-select").addEventListener("change", renderFilterFields);
  $("sign-out").addEventListener("click", () => signOut());
  showView(false);
}

main();
