/**
 * Browser client for the gateway's WebSocket protocol at /v1/ws.
 *
 * Plain ES module, no build step, no dependencies. It keeps the application's *intent* (which channels it wants,
 * where it is present) separate from the *connection* that currently carries it, so a dropped socket is repaired
 * without the application noticing anything but a state change:
 *
 *   const client = new RealtimeClient({ token, getToken: refreshAccessToken });
 *   client.on("state", (state) => badge.textContent = state);
 *   const sub = await client.subscribe("orders", { location_id: "loc-xyz789" }, (event) => render(event), {
 *     onGap: ({ stream }) => reloadOverRest(stream),      // the server could not replay what we missed
 *     onRevoked: (frame) => showRevoked(frame.reason),  // permission lost, channel gone, ...
 *   });
 *   await sub.unsubscribe();
 *
 * Wire format: docs/protocol.md (and docs/asyncapi.json); this client: docs/client.md; types: client.d.ts.
 */

/** The four states a client goes through; "closed" is also the state before the first connect(). */
export const ConnectionState = Object.freeze({
  CONNECTING: "connecting",
  CONNECTED: "connected",
  RECONNECTING: "reconnecting",
  CLOSED: "closed",
});

/** Close codes the gateway uses (RFC 6455 plus its 4xxx range), and the one this client uses for a dead link. */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  ABNORMAL: 1006,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  SERVICE_RESTART: 1012,
  TRY_AGAIN_LATER: 1013,
  HEARTBEAT_TIMEOUT: 4000, // the client's own close for a dead link
  DISCONNECTED: 4000, // the server's: an operator closed the connection (reconnect with backoff)
  UNAUTHENTICATED: 4401,
  FORBIDDEN: 4403,
  SLOW_CONSUMER: 4408,
  TOO_MANY_CONNECTIONS: 4429,
});

/** Closes after which reconnecting would only be refused again: the client stops and tells the application. */
const TERMINAL_CLOSE_CODES = new Set([
  CloseCode.FORBIDDEN,
  CloseCode.TOO_MANY_CONNECTIONS,
  CloseCode.POLICY_VIOLATION,
]);

const DEFAULT_OPTIONS = Object.freeze({
  url: "/v1/ws",
  token: null,
  getToken: null,
  authMethod: "subprotocol", // or "query": subprotocol keeps the token out of URLs and access logs
  heartbeatIntervalMs: 20_000,
  heartbeatTimeoutMs: 10_000,
  requestTimeoutMs: 10_000,
  reconnectInitialDelayMs: 500,
  reconnectMaxDelayMs: 30_000,
  reconnectFactor: 2,
  maxReconnectAttempts: Infinity,
  serviceRestartDelayMs: 1_000,
  slowConsumerDelayMs: 250,
  tokenRefreshMarginMs: 30_000,
  maxAuthRetries: 2,
  maxBufferedOrphanEvents: 1_000,
  WebSocket: globalThis.WebSocket,
});

// ---------------------------------------------------------------------------------------------------------------
// Errors: every failure the application can see is a RealtimeError with a machine-readable `code`.
// ---------------------------------------------------------------------------------------------------------------

/** Base class: `code` is the server's error code (or a client one), `frame` the whole server frame if any. */
export class RealtimeError extends Error {
  constructor(message, { code = "error", frame = null, closeCode = null } = {}) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.frame = frame;
    this.closeCode = closeCode;
  }
}

const FRAME_ENVELOPE = new Set(["type", "id", "code", "message"]);

/** The server answered a request with {"type": "error"}. */
export class ServerError extends RealtimeError {
  constructor(frame) {
    super(frame.message || frame.code || "Server error", { code: frame.code || "error", frame });
  }

  /** The `id` of the request this error answers, or null for an error outside any request. */
  get requestId() {
    return this.frame.id ?? null;
  }

  /** Every detail field of the frame (all but type, id, code and message), e.g. {current, limit}. */
  get details() {
    return Object.fromEntries(Object.entries(this.frame).filter(([key]) => !FRAME_ENVELOPE.has(key)));
  }
}

export class ChannelNotFoundError extends ServerError {}
export class UnauthorizedError extends ServerError {
  /** The permission the server said is missing, e.g. "orders.read". */
  get requiredPermission() {
    return this.frame.required_permission ?? null;
  }

  /** The channel that was refused. */
  get channel() {
    return this.frame.channel ?? null;
  }
}
export class InvalidParamsError extends ServerError {
  /** The channel whose parameters were wrong (null when the message named none). */
  get channel() {
    return this.frame.channel ?? null;
  }
}
export class SubscriptionLimitError extends ServerError {
  /** Subscriptions the connection holds. */
  get current() {
    return this.frame.current ?? null;
  }

  /** The most it may hold (the server's max_subscriptions). */
  get limit() {
    return this.frame.limit ?? null;
  }
}
export class SubscriptionNotFoundError extends ServerError {
  get subscriptionId() {
    return this.frame.subscription_id ?? null;
  }
}
export class InvalidMessageError extends ServerError {}
export class RateLimitedError extends ServerError {
  /** How long the server asked us to wait before trying again. */
  get retryAfterMs() {
    return Number(this.frame.retry_after_ms ?? 1000);
  }
}
export class AuthenticationError extends ServerError {}
export class ConnectionLimitError extends ServerError {
  /** The most connections one user may hold open. */
  get limit() {
    return this.frame.limit ?? null;
  }
}
export class ForbiddenError extends ServerError {}
export class UnavailableError extends ServerError {}
export class DisconnectedError extends ServerError {}
export class InternalServerError extends ServerError {}
/** An ack the server refused (issue 16): ack_not_enabled, event_not_found or event_not_in_subscription. */
export class AckError extends ServerError {
  get eventId() {
    return this.details.event_id ?? null;
  }
}

const ERROR_CLASS_BY_CODE = Object.freeze({
  channel_not_found: ChannelNotFoundError,
  unauthorized: UnauthorizedError,
  invalid_params: InvalidParamsError,
  subscription_limit: SubscriptionLimitError,
  subscription_not_found: SubscriptionNotFoundError,
  invalid_message: InvalidMessageError,
  unknown_type: InvalidMessageError,
  rate_limited: RateLimitedError,
  unauthenticated: AuthenticationError,
  token_expired: AuthenticationError,
  connection_limit: ConnectionLimitError,
  forbidden: ForbiddenError,
  unavailable: UnavailableError,
  disconnected: DisconnectedError,
  internal_error: InternalServerError,
  ack_not_enabled: AckError,
  event_not_found: AckError,
  event_not_in_subscription: AckError,
});

/** Build the typed error for a server error frame. */
export function errorFromFrame(frame) {
  const ErrorClass = ERROR_CLASS_BY_CODE[frame.code] ?? ServerError;
  return new ErrorClass(frame);
}

/** The connection dropped before the server answered. */
export class ConnectionLostError extends RealtimeError {
  constructor(message = "Connection lost before the server answered") {
    super(message, { code: "connection_lost" });
  }
}

/** The server did not answer in time. */
export class RequestTimeoutError extends RealtimeError {
  constructor(frame) {
    super(`No answer to '${frame.type}' in time`, { code: "timeout", frame });
  }
}

/** The application closed the client, or the server refused us for good (4403, 4429, 1008, repeated 4401). */
export class ConnectionClosedError extends RealtimeError {
  constructor(message = "Client is closed", { closeCode = null, code = "client_closed" } = {}) {
    super(message, { code, closeCode });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------------------------

/** Serialize with sorted keys, so equal params give equal keys whatever order they were written in. */
export function stableStringify(value) {
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(",")}]`;
  if (value && typeof value === "object") {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${stableStringify(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** Read the `exp` claim (seconds since epoch) of a JWT without verifying it; null if there is none. */
export function readTokenExpiry(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = payload + "=".repeat((4 - (payload.length % 4)) % 4);
    const claims = JSON.parse(atob(padded));
    return typeof claims.exp === "number" ? claims.exp : null;
  } catch {
    return null;
  }
}

/** Exponential backoff with "equal jitter": never less than half the step, so reconnects spread but don't spin. */
export function backoffDelayMs(attempt, { initialMs, maxMs, factor, random = Math.random }) {
  const step = Math.min(maxMs, initialMs * factor ** attempt);
  return Math.round(step / 2 + random() * (step / 2));
}

function resolveSocketUrl(url) {
  const base = globalThis.location ? globalThis.location.href : "http://localhost/";
  const resolved = new URL(url, base);
  if (resolved.protocol === "http:") resolved.protocol = "ws:";
  if (resolved.protocol === "https:") resolved.protocol = "wss:";
  return resolved;
}

// ---------------------------------------------------------------------------------------------------------------
// Subscription: the application's handle, stable across reconnects while the server's subscription_id changes.
// ---------------------------------------------------------------------------------------------------------------

let nextSubscriptionNumber = 0;

/** The events an ack subscription must acknowledge (realtime/acks.py ACK_EVENTS). */
const ACK_EVENTS = new Set(["kds.ticket.created", "kds.ticket.recalled"]);

function isAckSubscription(subscription) {
  return subscription.channel === "kds" && subscription.params?.ack === true;
}

export class Subscription {
  constructor(client, { channel, params, onEvent, onGap, onRevoked, autoAck = false }) {
    nextSubscriptionNumber += 1;
    /** Client-side identity; never changes, unlike `serverId`. */
    this.key = `csub-${nextSubscriptionNumber}`;
    this.channel = channel;
    this.params = params;
    /** The server's subscription_id on the current connection, null while (re)subscribing. */
    this.serverId = null;
    /** "pending" (never acknowledged), "active", "resubscribing", or "closed". */
    this.status = "pending";
    /** Last {seq, epoch} seen per stream, sent as `resume` when re-subscribing after a reconnect. */
    this.positions = new Map();
    this.eventCount = 0;
    this.createdAt = new Date();
    this.closeReason = null;
    this._client = client;
    this._onEvent = onEvent;
    this._onGap = onGap;
    this._onRevoked = onRevoked;
    /** Acknowledge each event that needs it once its handler returned (issue 16; needs params.ack). */
    this.autoAck = Boolean(autoAck);
    this._acknowledged = null; // {resolve, reject} of the subscribe() promise until the first answer
  }

  get isActive() {
    return this.status === "active";
  }

  /** Stop receiving events; safe to call twice. */
  unsubscribe() {
    return this._client.unsubscribe(this);
  }

  /** The resume object for the subscribe frame, or null when nothing was received yet. */
  resumeRequest() {
    if (this.positions.size === 0) return null;
    const resume = {};
    for (const [stream, position] of this.positions) resume[stream] = { seq: position.seq, epoch: position.epoch };
    return resume;
  }

  toJSON() {
    return {
      key: this.key,
      serverId: this.serverId,
      channel: this.channel,
      params: this.params,
      status: this.status,
      eventCount: this.eventCount,
    };
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------------------------

export class RealtimeClient {
  /**
   * @param {object} options  see DEFAULT_OPTIONS; `token` (string) or `getToken` (async () => string) is required.
   */
  constructor(options = {}) {
    this.options = { ...DEFAULT_OPTIONS, ...options };
    if (!this.options.WebSocket) throw new RealtimeError("No WebSocket implementation available");
    this._token = this.options.token;
    this._state = ConnectionState.CLOSED;
    this._session = null;
    this._socket = null;
    this._wantOpen = false;
    this._everConnected = false;
    this._attempt = 0;
    this._authFailures = 0;
    this._needFreshToken = false;
    this._tokenRefreshTimer = null;
    this._tokenPromise = null;
    this._reconnectTimer = null;
    this._heartbeatTimer = null;
    this._pongTimer = null;
    this._requestNumber = 0;
    this._pending = new Map(); // request id -> {frame, resolve, reject, timer, survivesReconnect}
    this._abandonedSubscribes = new Set(); // request ids that timed out: undo them if the server answers late
    this._subscriptions = new Map(); // key -> Subscription
    this._subscriptionsByServerId = new Map();
    this._orphanEvents = new Map(); // server id -> events that arrived before their subscribe response
    this._presence = new Map(); // stableStringify([channel, params]) -> {channel, params, userInfo, waiters}
    this._connectWaiters = [];
    this._listeners = new Map();
    this._onOnline = () => this._reconnectNowIfWaiting();
    if (typeof globalThis.addEventListener === "function") globalThis.addEventListener("online", this._onOnline);
  }

  // ----- public API ------------------------------------------------------------------------------------------

  /** The current ConnectionState. */
  get state() {
    return this._state;
  }

  /** The server's "connected" frame of the current connection (user_id, connection_id, limits), or null. */
  get session() {
    return this._session;
  }

  /** The application's subscriptions, in the order they were made. */
  get subscriptions() {
    return [...this._subscriptions.values()];
  }

  /** Where this client is present: [{channel, params, userInfo}]. */
  get presence() {
    return [...this._presence.values()].map(({ channel, params, userInfo }) => ({ channel, params, userInfo }));
  }

  /**
   * Listen to "state", "connected", "disconnected", "subscription" (a Subscription changed status), "event",
   * "presence", "gap", "revoked", "error" or "frame".
   * Returns a function that removes the listener.
   */
  on(type, listener) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(listener);
    return () => this.off(type, listener);
  }

  /** Like on(), for the next time only. Returns a function that removes the listener if it has not run yet. */
  once(type, listener) {
    const wrapper = (...args) => {
      this.off(type, wrapper);
      listener(...args);
    };
    wrapper.listener = listener;
    return this.on(type, wrapper);
  }

  /** Remove a listener given to on() or once(); without a listener, every listener of that type. */
  off(type, listener) {
    const listeners = this._listeners.get(type);
    if (!listeners) return;
    if (listener === undefined) {
      listeners.clear();
      return;
    }
    for (const registered of listeners) {
      if (registered === listener || registered.listener === listener) listeners.delete(registered);
    }
  }

  /** Listen to presence frames (user_joined, user_left) and to "sync" snapshots sent after each (re)join. */
  onPresence(listener) {
    return this.on("presence", listener);
  }

  /** Open the connection; resolves with the "connected" frame, rejects if the server refuses us for good. */
  connect() {
    const connected = new Promise((resolve, reject) => this._connectWaiters.push({ resolve, reject }));
    if (this._state === ConnectionState.CONNECTED) {
      this._settleConnectWaiters(null);
      return connected;
    }
    if (!this._wantOpen) {
      this._wantOpen = true;
      this._attempt = 0;
      this._authFailures = 0;
      this._openSocket();
    }
    return connected;
  }

  /** Close for good: no reconnect; subscriptions are kept locally and restored if connect() is called again. */
  close(code = CloseCode.NORMAL, reason = "client closed") {
    this._wantOpen = false;
    clearTimeout(this._reconnectTimer);
    clearTimeout(this._tokenRefreshTimer);
    this._reconnectTimer = null;
    const socket = this._socket;
    this._dropSocket();
    if (socket) {
      try {
        socket.close(code, reason);
      } catch {
        /* already closing */
      }
    }
    const error = new ConnectionClosedError();
    this._failPending(error);
    this._failUnconfirmedIntents(error);
    this._settleConnectWaiters(error);
    this._setState(ConnectionState.CLOSED);
  }

  /** Close and forget everything, e.g. when the user signs out. */
  destroy() {
    this.close();
    for (const subscription of this._subscriptions.values()) subscription.status = "closed";
    this._subscriptions.clear();
    this._presence.clear();
    this._listeners.clear();
    if (typeof globalThis.removeEventListener === "function") {
      globalThis.removeEventListener("online", this._onOnline);
    }
  }

  /**
   * Subscribe to a channel. Resolves with a Subscription once the server accepted it (also if that happens only
   * after a reconnect); rejects with a ServerError subclass (e.g. UnauthorizedError) if the server refuses it.
   *
   * options: {onGap(info), onRevoked(frame), autoAck (with params.ack: ack each event once its handler returned),
   *   resumeFrom: {"<stream>": {seq, epoch}} (start from these positions, e.g. a snapshot's)}
   */
  subscribe(channel, params = {}, onEvent = () => {}, options = {}) {
    const subscription = new Subscription(this, {
      channel,
      params,
      onEvent,
      onGap: options.onGap,
      onRevoked: options.onRevoked,
      autoAck: options.autoAck,
    });
    // Start from given positions (a snapshot's, see "Snapshots" below) instead of where the streams stand now.
    for (const [stream, position] of Object.entries(options.resumeFrom ?? {})) {
      subscription.positions.set(stream, { seq: position.seq, epoch: position.epoch ?? null });
    }
    this._subscriptions.set(subscription.key, subscription);
    this._emit("subscription", subscription);
    const acknowledged = new Promise((resolve, reject) => {
      subscription._acknowledged = { resolve, reject };
    });
    if (this._state === ConnectionState.CONNECTED) this._sendSubscribe(subscription);
    else if (!this._wantOpen) this.connect().catch(() => {});
    return acknowledged;
  }

  /** Unsubscribe (a Subscription or its key). Resolves once the server confirmed, or at once when offline. */
  async unsubscribe(subscriptionOrKey) {
    const key = typeof subscriptionOrKey === "string" ? subscriptionOrKey : subscriptionOrKey?.key;
    const subscription = this._subscriptions.get(key);
    if (!subscription) return null;
    const serverId = subscription.serverId;
    this._forgetSubscription(subscription, "unsubscribed");
    subscription._acknowledged?.reject(new ConnectionClosedError("Unsubscribed before the server answered"));
    subscription._acknowledged = null;
    // Offline, the server has already forgotten it with the old connection; nothing to send.
    if (this._state !== ConnectionState.CONNECTED || !serverId) return null;
    try {
      return await this._request({ type: "unsubscribe", subscription_id: serverId });
    } catch (error) {
      if (error instanceof SubscriptionNotFoundError || error instanceof ConnectionLostError) return null;
      throw error;
    }
  }

  /** Drop every subscription, here and on the server. */
  async unsubscribeAll() {
    for (const subscription of [...this._subscriptions.values()]) {
      this._forgetSubscription(subscription, "unsubscribed");
      subscription._acknowledged?.reject(new ConnectionClosedError("Unsubscribed before the server answered"));
      subscription._acknowledged = null;
    }
    if (this._state !== ConnectionState.CONNECTED) return null;
    return this._request({ type: "unsubscribe_all" });
  }

  /** Ask the server for its list; each entry gets `subscription`, the local Subscription it belongs to (if any). */
  async listSubscriptions() {
    await this._whenConnected();
    const frame = await this._request({ type: "list_subscriptions" });
    return (frame.subscriptions ?? []).map((entry) => ({
      ...entry,
      subscription: this._subscriptionsByServerId.get(entry.id ?? entry.subscription_id) ?? null,
    }));
  }

  /**
   * Be present at channel+params (e.g. {location_id}) as userInfo ({name, role}). Kept across reconnects.
   * Resolves with the server's answer; onPresence listeners then get a "sync" snapshot of who is there.
   */
  presenceJoin(channel, params, userInfo = {}) {
    const key = stableStringify([channel, params]);
    const existing = this._presence.get(key);
    const entry = existing ?? { channel, params, userInfo, waiters: [] };
    entry.userInfo = userInfo;
    this._presence.set(key, entry);
    const joined = new Promise((resolve, reject) => entry.waiters.push({ resolve, reject }));
    if (this._state === ConnectionState.CONNECTED) this._sendPresenceJoin(key, entry);
    else if (!this._wantOpen) this.connect().catch(() => {});
    return joined;
  }

  /** Stop being present at channel+params. */
  async presenceLeave(channel, params) {
    const key = stableStringify([channel, params]);
    const entry = this._presence.get(key);
    this._presence.delete(key);
    for (const waiter of entry?.waiters ?? []) waiter.reject(new ConnectionClosedError("Left before joining"));
    if (this._state !== ConnectionState.CONNECTED) return null;
    return this._request({ type: "presence_leave", channel, params });
  }

  /** Who is present at channel+params: [{user_id, user_info, joined_at}]. */
  async presenceList(channel, params) {
    await this._whenConnected();
    const frame = await this._request({ type: "presence_list", channel, params });
    return frame.users ?? [];
  }

  /** Round trip to the server, in milliseconds. */
  async ping() {
    await this._whenConnected();
    const started = performance.now();
    await this._request({ type: "ping" });
    return performance.now() - started;
  }

  /** Hand the server a fresh token on the open connection (the `authenticate` message). */
  async authenticate(token) {
    this._token = token;
    this._scheduleTokenRefresh(token);
    if (this._state !== ConnectionState.CONNECTED) return null;
    return this._request({ type: "authenticate", token });
  }

  // ----- connection lifecycle --------------------------------------------------------------------------------

  async _openSocket() {
    this._setState(this._everConnected ? ConnectionState.RECONNECTING : ConnectionState.CONNECTING);
    let token;
    try {
      token = await this._currentToken();
    } catch (error) {
      this._emit("error", error instanceof RealtimeError ? error : new RealtimeError(String(error), { code: "token" }));
      if (this._wantOpen) this._scheduleReconnect(this._nextBackoffMs());
      return;
    }
    if (!this._wantOpen) return;
    if (!token) {
      this._closeForGood(new ConnectionClosedError("No token to connect with", { code: "unauthenticated" }));
      return;
    }
    const url = resolveSocketUrl(this.options.url);
    let protocols;
    if (this.options.authMethod === "query") url.searchParams.set("access_token", token);
    else protocols = ["bearer", token];
    let socket;
    try {
      socket = new this.options.WebSocket(url.toString(), protocols);
    } catch (error) {
      this._emit("error", new RealtimeError(`Cannot open WebSocket: ${error}`, { code: "connect_failed" }));
      this._scheduleReconnect(this._nextBackoffMs());
      return;
    }
    this._socket = socket;
    socket.onmessage = (message) => this._handleMessage(message.data);
    socket.onclose = (event) => {
      if (this._socket === socket) this._handleClose(event.code, event.reason);
    };
    socket.onerror = () => {}; // a close event always follows, with the code that matters
  }

  async _currentToken() {
    if ((this._needFreshToken || !this._token) && this.options.getToken) {
      this._token = await this._fetchToken();
      this._needFreshToken = false;
    }
    return this._token;
  }

  /** Ask the application for a token; concurrent callers share one request. */
  _fetchToken() {
    if (!this._tokenPromise) {
      this._tokenPromise = Promise.resolve()
        .then(() => this.options.getToken())
        .finally(() => {
          this._tokenPromise = null;
        });
    }
    return this._tokenPromise;
  }

  _handleConnected(frame) {
    if (this._state === ConnectionState.CONNECTED) {
      this._session = frame; // a repeated greeting (e.g. after authenticate) is not a new connection
      return;
    }
    this._session = frame;
    this._everConnected = true;
    this._attempt = 0;
    this._authFailures = 0;
    this._setState(ConnectionState.CONNECTED);
    this._startHeartbeat();
    this._scheduleTokenRefresh(this._token);
    this._emit("connected", frame);
    this._settleConnectWaiters(null, frame);
    for (const subscription of this._subscriptions.values()) this._sendSubscribe(subscription);
    for (const [key, entry] of this._presence) this._sendPresenceJoin(key, entry);
  }

  _handleClose(code, reason) {
    const wasConnected = this._state === ConnectionState.CONNECTED;
    this._dropSocket();
    this._failPending(new ConnectionLostError());
    if (wasConnected) this._emit("disconnected", { code, reason });
    if (!this._wantOpen) {
      this._setState(ConnectionState.CLOSED);
      return;
    }
    if (TERMINAL_CLOSE_CODES.has(code)) {
      const codeName = { 4403: "forbidden", 4429: "connection_limit", 1008: "policy_violation" }[code];
      this._closeForGood(
        new ConnectionClosedError(`Server refused the connection (${code} ${reason || codeName})`, {
          closeCode: code,
          code: codeName,
        }),
      );
      return;
    }
    if (code === CloseCode.UNAUTHENTICATED) {
      // Reconnecting with the same token would be refused again: ask for a new one, and give up if even fresh
      // tokens are refused (a revoked user must not spin).
      this._authFailures += 1;
      if (!this.options.getToken || this._authFailures > this.options.maxAuthRetries) {
        this._closeForGood(
          new ConnectionClosedError("Authentication failed", { closeCode: code, code: "unauthenticated" }),
        );
        return;
      }
      this._needFreshToken = true;
      this._scheduleReconnect(this._authFailures === 1 ? 0 : this._nextBackoffMs());
      return;
    }
    if (code === CloseCode.SLOW_CONSUMER) {
      // We fell behind; the subscriptions resume from their last positions so nothing is lost.
      this._scheduleReconnect(this._jitter(this.options.slowConsumerDelayMs));
      return;
    }
    if (code === CloseCode.SERVICE_RESTART) {
      // Spread the herd: every client of the restarting server comes back within the window, not at once.
      this._attempt = Math.max(this._attempt, 1);
      this._scheduleReconnect(this._jitter(this.options.serviceRestartDelayMs));
      return;
    }
    this._scheduleReconnect(this._nextBackoffMs());
  }

  _closeForGood(error) {
    this._wantOpen = false;
    clearTimeout(this._reconnectTimer);
    clearTimeout(this._tokenRefreshTimer);
    this._failPending(error);
    this._failUnconfirmedIntents(error);
    this._settleConnectWaiters(error);
    this._emit("error", error);
    this._setState(ConnectionState.CLOSED);
  }

  _scheduleReconnect(delayMs) {
    if (this._attempt > this.options.maxReconnectAttempts) {
      this._closeForGood(new ConnectionClosedError("Gave up reconnecting", { code: "reconnect_failed" }));
      return;
    }
    this._setState(this._everConnected ? ConnectionState.RECONNECTING : ConnectionState.CONNECTING);
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      if (this._wantOpen && !this._socket) this._openSocket();
    }, delayMs);
  }

  _reconnectNowIfWaiting() {
    if (this._reconnectTimer && this._wantOpen) {
      clearTimeout(this._reconnectTimer);
      this._reconnectTimer = null;
      this._openSocket();
    }
  }

  _nextBackoffMs() {
    const delay = backoffDelayMs(this._attempt, {
      initialMs: this.options.reconnectInitialDelayMs,
      maxMs: this.options.reconnectMaxDelayMs,
      factor: this.options.reconnectFactor,
    });
    this._attempt += 1;
    return delay;
  }

  _jitter(baseMs) {
    return Math.round(baseMs * (0.5 + Math.random()));
  }

  /** Detach from the current socket: the connection's server-side state (subscription ids) is gone with it. */
  _dropSocket() {
    clearInterval(this._heartbeatTimer);
    clearTimeout(this._pongTimer);
    this._heartbeatTimer = null;
    this._pongTimer = null;
    if (this._socket) {
      this._socket.onmessage = null;
      this._socket.onclose = null;
      this._socket.onerror = null;
      this._socket = null;
    }
    this._session = null;
    this._subscriptionsByServerId.clear();
    this._orphanEvents.clear();
    for (const subscription of this._subscriptions.values()) {
      subscription.serverId = null;
      if (subscription.status === "active") {
        subscription.status = "resubscribing";
        this._emit("subscription", subscription);
      }
    }
  }

  _setState(state) {
    if (state === this._state) return;
    this._state = state;
    this._emit("state", state);
  }

  _settleConnectWaiters(error, frame = this._session) {
    const waiters = this._connectWaiters;
    this._connectWaiters = [];
    for (const waiter of waiters) {
      if (error) waiter.reject(error);
      else waiter.resolve(frame);
    }
  }

  _whenConnected() {
    if (this._state === ConnectionState.CONNECTED) return Promise.resolve(this._session);
    return this.connect();
  }

  // ----- heartbeats and token refresh -----------------------------------------------------------------------

  _startHeartbeat() {
    clearInterval(this._heartbeatTimer);
    this._heartbeatTimer = setInterval(() => this._sendHeartbeat(), this.options.heartbeatIntervalMs);
  }

  _sendHeartbeat() {
    if (this._pongTimer) return; // the previous ping is still out
    this._pongTimer = setTimeout(() => {
      // No pong: the TCP connection may be half-open and would never report its death; treat it as dead now.
      this._pongTimer = null;
      const socket = this._socket;
      this._handleClose(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout");
      try {
        socket?.close(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout");
      } catch {
        /* ignore */
      }
    }, this.options.heartbeatTimeoutMs);
    this._request({ type: "ping" }, { timeoutMs: this.options.heartbeatTimeoutMs + 1_000 }).catch(() => {});
  }

  _scheduleTokenRefresh(token) {
    clearTimeout(this._tokenRefreshTimer);
    this._tokenRefreshTimer = null;
    const expiry = token ? readTokenExpiry(token) : null;
    if (!expiry || !this.options.getToken || !this._wantOpen) return;
    // Refresh in-band shortly before the token runs out, so the server need not close us with 4401.
    const delayMs = Math.max(5_000, expiry * 1000 - Date.now() - this.options.tokenRefreshMarginMs);
    this._tokenRefreshTimer = setTimeout(async () => {
      try {
        const fresh = await this._fetchToken();
        if (fresh) await this.authenticate(fresh);
      } catch (error) {
        this._emit("error", error);
      }
    }, Math.min(delayMs, 2 ** 31 - 1));
  }

  // ----- requests -------------------------------------------------------------------------------------------

  _send(frame) {
    if (!this._socket || this._socket.readyState !== 1) throw new ConnectionLostError("Not connected");
    this._socket.send(JSON.stringify(frame));
  }

  /** Send a frame with a fresh `id` and resolve with the frame that answers it. */
  _request(frame, { timeoutMs = this.options.requestTimeoutMs, onTimeout = null } = {}) {
    this._requestNumber += 1;
    const id = `req-${this._requestNumber}`;
    const request = { ...frame, id };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        onTimeout?.(id);
        reject(new RequestTimeoutError(request));
      }, timeoutMs);
      this._pending.set(id, { frame: request, resolve, reject, timer });
      try {
        this._send(request);
      } catch (error) {
        clearTimeout(timer);
        this._pending.delete(id);
        reject(error);
      }
    });
  }

  _failPending(error) {
    for (const [id, pending] of this._pending) {
      clearTimeout(pending.timer);
      this._pending.delete(id);
      pending.reject(error);
    }
  }

  /** Reject subscribe()/presenceJoin() promises still waiting for a first answer; confirmed intents are kept. */
  _failUnconfirmedIntents(error) {
    for (const subscription of [...this._subscriptions.values()]) {
      if (!subscription._acknowledged) continue;
      this._forgetSubscription(subscription, error.code);
      subscription._acknowledged.reject(error);
      subscription._acknowledged = null;
    }
    for (const [key, entry] of [...this._presence]) {
      if (entry.waiters.length === 0) continue;
      this._presence.delete(key);
      for (const waiter of entry.waiters) waiter.reject(error);
      entry.waiters = [];
    }
  }

  _resolvePending(frame) {
    const pending = this._pending.get(frame.id);
    if (!pending) return false;
    clearTimeout(pending.timer);
    this._pending.delete(frame.id);
    if (frame.type === "error" || frame.success === false) pending.reject(errorFromFrame(frame));
    else pending.resolve(frame);
    return true;
  }

  // ----- subscriptions --------------------------------------------------------------------------------------

  async _sendSubscribe(subscription) {
    const frame = { type: "subscribe", channel: subscription.channel, params: subscription.params };
    // Always ask to resume (an empty map the first time): the response then carries each stream's position, so a
    // subscription that has not received anything yet can still resume after a reconnect.
    frame.resume = subscription.resumeRequest() ?? {};
    const attemptedWith = this._socket;
    let response;
    try {
      response = await this._request(frame, {
        onTimeout: (id) => this._abandonedSubscribes.add(id),
      });
    } catch (error) {
      this._handleSubscribeFailure(subscription, error, attemptedWith);
      return;
    }
    if (subscription.status === "closed" || this._socket !== attemptedWith) {
      // Unsubscribed (or reconnected) while the request was out: undo it on the server.
      if (this._socket === attemptedWith && response.subscription_id) {
        this._request({ type: "unsubscribe", subscription_id: response.subscription_id }).catch(() => {});
      }
      return;
    }
    subscription.serverId = response.subscription_id;
    subscription.status = "active";
    this._subscriptionsByServerId.set(subscription.serverId, subscription);
    this._emit("subscription", subscription);
    this._seedPositions(subscription, response);
    for (const [stream, resumed] of Object.entries(response.resumed ?? {})) {
      if (resumed === false) this._reportGap(subscription, stream, response);
    }
    subscription._acknowledged?.resolve(subscription);
    subscription._acknowledged = null;
    const early = this._orphanEvents.get(subscription.serverId) ?? [];
    this._orphanEvents.delete(subscription.serverId);
    for (const event of early) this._deliverEvent(subscription, event);
  }

  /** If the server tells us where its streams stand, remember it so a reconnect can resume even without events. */
  _seedPositions(subscription, response) {
    const streams = response.streams ?? response.positions;
    if (!streams || typeof streams !== "object") return;
    for (const [stream, position] of Object.entries(streams)) {
      if (subscription.positions.has(stream) || !position || typeof position.seq !== "number") continue;
      subscription.positions.set(stream, { seq: position.seq, epoch: position.epoch ?? null });
    }
  }

  _handleSubscribeFailure(subscription, error, attemptedWith) {
    if (subscription.status === "closed") return;
    if (error instanceof ConnectionLostError) return; // re-sent when the connection is back
    if (error instanceof RequestTimeoutError) {
      if (subscription._acknowledged) {
        this._forgetSubscription(subscription, "timeout");
        subscription._acknowledged.reject(error);
        subscription._acknowledged = null;
      } else if (this._socket === attemptedWith && this._socket) {
        // A restore that gets no answer means the connection is unhealthy: start over.
        const socket = this._socket;
        this._handleClose(CloseCode.HEARTBEAT_TIMEOUT, "subscribe timeout");
        try {
          socket.close(CloseCode.HEARTBEAT_TIMEOUT, "subscribe timeout");
        } catch {
          /* ignore */
        }
      }
      return;
    }
    if (error instanceof RateLimitedError) {
      setTimeout(() => {
        if (subscription.status !== "closed" && this._socket === attemptedWith && !subscription.serverId) {
          this._sendSubscribe(subscription);
        }
      }, error.retryAfterMs);
      return;
    }
    this._forgetSubscription(subscription, error.code);
    if (subscription._acknowledged) {
      subscription._acknowledged.reject(error);
      subscription._acknowledged = null;
      return;
    }
    // The server refused a subscription it had accepted before (permission revoked, channel removed, ...).
    this._revoke(subscription, { type: "subscription_revoked", channel: subscription.channel, reason: error.code, error });
  }

  _forgetSubscription(subscription, reason) {
    subscription.status = "closed";
    subscription.closeReason = reason;
    this._subscriptions.delete(subscription.key);
    if (subscription.serverId) this._subscriptionsByServerId.delete(subscription.serverId);
    this._emit("subscription", subscription);
  }

  _revoke(subscription, frame) {
    this._forgetSubscription(subscription, frame.reason ?? "revoked");
    this._callSafely(subscription._onRevoked, frame, subscription);
    this._emit("revoked", { subscription, frame });
  }

  _reportGap(subscription, stream, response) {
    const lastPosition = subscription.positions.get(stream) ?? null;
    // The old position is useless now; the next live event starts a new one.
    subscription.positions.delete(stream);
    const gap = { subscription, stream, lastPosition, response };
    this._callSafely(subscription._onGap, gap);
    this._emit("gap", gap);
  }

  _handleEvent(frame) {
    const subscription = this._subscriptionsByServerId.get(frame.subscription_id);
    if (subscription) {
      this._deliverEvent(subscription, frame);
      return;
    }
    // A replay may arrive before the response that tells us the new subscription_id; hold it for a moment.
    const waiting = [...this._subscriptions.values()].some((s) => s.serverId === null && s.status !== "closed");
    if (!waiting) return;
    const buffered = this._orphanEvents.get(frame.subscription_id) ?? [];
    if (buffered.length < this.options.maxBufferedOrphanEvents) buffered.push(frame);
    this._orphanEvents.set(frame.subscription_id, buffered);
  }

  _deliverEvent(subscription, frame) {
    if (frame.redelivery !== undefined && isAckSubscription(subscription)) {
      this._deliverAckEvent(subscription, frame); // a resend: past the dedupe below (acknowledged KDS tickets)
      return;
    }
    if (frame.stream && typeof frame.seq === "number") {
      const last = subscription.positions.get(frame.stream);
      // A replay can overlap what we already have; each (epoch, seq) is delivered once.
      if (last && last.epoch === frame.epoch && frame.seq <= last.seq) return;
      subscription.positions.set(frame.stream, { seq: frame.seq, epoch: frame.epoch ?? null });
    }
    if (isAckSubscription(subscription)) {
      this._deliverAckEvent(subscription, frame);
      return;
    }
    subscription.eventCount += 1;
    this._callSafely(subscription._onEvent, frame, subscription);
    this._emit("event", frame, subscription);
  }

  // ----- acknowledged KDS tickets (issue 16) ---------------------------------------------------------------
  // A kds subscription with params.ack must acknowledge each kds.ticket.created / recalled, or the server sends
  // it again with "redelivery": n and finally alerts the kitchen's managers. Handlers get ack() as a third
  // argument (undefined for events that need none); autoAck calls it once the handler returned (or resolved).

  /** Acknowledge an event of an ack subscription; resolves with the response (duplicate acks succeed too). */
  ack(subscription, eventOrId) {
    const eventId = typeof eventOrId === "string" ? eventOrId : eventOrId.event_id;
    if (!subscription.serverId) return Promise.reject(new ConnectionLostError("Not subscribed right now"));
    return this._request({ type: "ack", subscription_id: subscription.serverId, event_id: eventId });
  }

  _deliverAckEvent(subscription, frame) {
    subscription.eventCount += 1;
    const ack = ACK_EVENTS.has(frame.event) ? () => this.ack(subscription, frame) : undefined;
    let result;
    let failed = false;
    try {
      result = subscription._onEvent?.(frame, subscription, ack);
    } catch (error) {
      failed = true; // a handler that threw did not show the ticket: no auto-ack, the server sends it again
      if (globalThis.console) globalThis.console.error("realtime client callback failed", error);
    }
    this._emit("event", frame, subscription);
    if (!subscription.autoAck || !ack || failed) return;
    const sendAck = () => ack().catch((error) => this._emit("error", error));
    if (result && typeof result.then === "function") result.then(sendAck, () => {});
    else sendAck();
  }

  // ----- presence -------------------------------------------------------------------------------------------

  async _sendPresenceJoin(key, entry) {
    const attemptedWith = this._socket;
    let response;
    try {
      response = await this._request({
        type: "presence_join",
        channel: entry.channel,
        params: entry.params,
        user_info: entry.userInfo,
      });
    } catch (error) {
      if (error instanceof ConnectionLostError || this._presence.get(key) !== entry) return;
      if (error instanceof RateLimitedError) {
        setTimeout(() => {
          if (this._presence.get(key) === entry && this._socket === attemptedWith) this._sendPresenceJoin(key, entry);
        }, error.retryAfterMs);
        return;
      }
      this._presence.delete(key);
      for (const waiter of entry.waiters) waiter.reject(error);
      entry.waiters = [];
      this._emit("error", error);
      return;
    }
    if (this._presence.get(key) !== entry || this._socket !== attemptedWith) return;
    for (const waiter of entry.waiters) waiter.resolve(response);
    entry.waiters = [];
    try {
      const users = await this.presenceList(entry.channel, entry.params);
      this._emit("presence", {
        type: "presence",
        event: "sync",
        channel: entry.channel,
        params: entry.params,
        location_id: entry.params?.location_id ?? null,
        users,
      });
    } catch {
      /* the live presence frames still arrive */
    }
  }

  // ----- incoming frames ------------------------------------------------------------------------------------

  _handleMessage(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      this._emit("error", new RealtimeError("Server sent a frame that is not JSON", { code: "bad_frame" }));
      return;
    }
    this._emit("frame", frame);
    if (frame.type === "pong") {
      clearTimeout(this._pongTimer);
      this._pongTimer = null;
    }
    switch (frame.type) {
      case "connected":
        this._handleConnected(frame);
        return;
      case "event":
        this._handleEvent(frame);
        return;
      case "presence":
        this._emit("presence", frame);
        return;
      case "subscription_revoked": {
        const subscription = this._subscriptionsByServerId.get(frame.subscription_id);
        if (subscription) this._revoke(subscription, frame);
        return;
      }
      default:
        break;
    }
    if (frame.id !== undefined && frame.id !== null) {
      if (this._resolvePending(frame)) return;
      if (this._abandonedSubscribes.delete(frame.id) && frame.subscription_id && frame.type === "response") {
        this._request({ type: "unsubscribe", subscription_id: frame.subscription_id }).catch(() => {});
        return;
      }
    }
    if (frame.type === "error") {
      const error = errorFromFrame(frame);
      if (frame.code === "token_expired" && this.options.getToken) {
        this._fetchToken()
          .then((token) => token && this.authenticate(token))
          .catch(() => {});
      }
      this._emit("error", error);
    }
  }

  // ----- listeners ------------------------------------------------------------------------------------------

  _emit(type, ...args) {
    for (const listener of this._listeners.get(type) ?? []) this._callSafely(listener, ...args);
  }

  /** Application callbacks must not break the client: report their errors instead of letting them escape. */
  _callSafely(callback, ...args) {
    if (typeof callback !== "function") return;
    try {
      callback(...args);
    } catch (error) {
      if (globalThis.console) globalThis.console.error("realtime client callback failed", error);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Snapshots (issue 16): the current state of orders, kds or tables, then the events after it.
//
//   const kitchen = await client.subscribeFromSnapshot("kds", { location_id: "loc-xyz789", station: "grill" }, {
//     onChange: ({ kind, id, item }, state) => render([...state.values()]),
//   });
//
// GET /v1/snapshots/<channel> answers the live entities and the stream position they hold at; subscribing with
// `resume` from that position delivers every later event, and EntityState applies them by the version rule
// (docs/protocol.md, "Snapshots and versions"). This section only adds to RealtimeClient's prototype, so the rest
// of the client does not depend on it.
// ---------------------------------------------------------------------------------------------------------------

/**
 * The state of one channel at one location: entities by id, fed by a snapshot and the events after it.
 *
 * The rule: an event whose `data.version` is not greater than the version held for that entity is dropped (it is
 * older than what is shown); one whose `data.status` is in the snapshot's `removed_statuses` removes the entity but
 * its version is kept, so a late, older event cannot bring it back. An event without a `version` is applied.
 */
export class EntityState {
  constructor(snapshot = null) {
    this.idField = null;
    this.removedStatuses = new Set();
    this._items = new Map();
    this._versions = new Map();
    if (snapshot) this.load(snapshot);
  }

  /** Replace everything with a snapshot's items (its id_field and removed_statuses too). */
  load(snapshot) {
    this.idField = snapshot.id_field;
    this.removedStatuses = new Set(snapshot.removed_statuses ?? []);
    this._items = new Map();
    this._versions = new Map();
    for (const item of snapshot.items ?? []) {
      const id = item[this.idField];
      this._items.set(id, item);
      if (typeof item.version === "number") this._versions.set(id, item.version);
    }
    return this;
  }

  /**
   * Apply one event's data; returns the change ({kind: "added" | "updated" | "removed", id, item, previous}) or
   * null when it was dropped (stale, or not about an entity).
   */
  apply(data) {
    const id = data?.[this.idField];
    if (id === undefined || id === null) return null;
    const held = this._versions.get(id);
    if (typeof data.version === "number") {
      if (held !== undefined && data.version <= held) return null;
      this._versions.set(id, data.version);
    }
    const previous = this._items.get(id) ?? null;
    if (this.removedStatuses.has(data.status)) {
      if (!previous) return null;
      this._items.delete(id);
      return { kind: "removed", id, item: data, previous };
    }
    this._items.set(id, data);
    return { kind: previous ? "updated" : "added", id, item: data, previous };
  }

  /** Apply an event frame (its `data`). */
  applyEvent(frame) {
    return this.apply(frame?.data);
  }

  get size() {
    return this._items.size;
  }

  get(id) {
    return this._items.get(id);
  }

  has(id) {
    return this._items.has(id);
  }

  /** The version held for an entity, also for one that was removed; undefined if never seen. */
  versionOf(id) {
    return this._versions.get(id);
  }

  keys() {
    return this._items.keys();
  }

  values() {
    return this._items.values();
  }

  entries() {
    return this._items.entries();
  }

  [Symbol.iterator]() {
    return this._items.entries();
  }

  toJSON() {
    return Object.fromEntries(this._items);
  }
}

/** The REST base of the gateway: `options.apiUrl`, else the socket URL's origin + "/v1". */
function resolveApiUrl(options) {
  if (options.apiUrl) return String(options.apiUrl).replace(/\/+$/, "");
  const socket = resolveSocketUrl(options.url);
  const protocol = socket.protocol === "wss:" ? "https:" : "http:";
  return `${protocol}//${socket.host}/v1`;
}

/** A handle on a state kept current from a snapshot: `state`, the live `subscription`, and `reload()`. */
export class SnapshotSubscription {
  constructor(client, channel, params, handlers) {
    this.channel = channel;
    this.params = params;
    this.state = new EntityState();
    this.snapshot = null;
    this.subscription = null;
    this.closed = false;
    this._client = client;
    this._handlers = handlers;
    this._generation = 0;
  }

  /**
   * Load a fresh snapshot and subscribe from its position (what a boot does, and what a gap needs: the history no
   * longer covers what was missed). Events of the previous subscription are not applied any more.
   */
  async reload() {
    this._generation += 1;
    const generation = this._generation;
    const previous = this.subscription;
    this.subscription = null;
    if (previous) await previous.unsubscribe().catch(() => {});
    const snapshot = await this._client.snapshot(this.channel, this.params);
    if (generation !== this._generation || this.closed) return this;
    this.snapshot = snapshot;
    this.state.load(snapshot);
    this._call("onLoad", this.state, snapshot);
    const stream = `${snapshot.channel}:${snapshot.location_id}`;
    const onEvent = (frame, subscription) => {
      if (generation !== this._generation) return;
      this._call("onEvent", frame, subscription);
      const change = this.state.applyEvent(frame);
      if (change) this._call("onChange", { ...change, event: frame }, this.state);
    };
    const subscription = await this._client.subscribe(this.channel, this.params, onEvent, {
      resumeFrom: { [stream]: snapshot.position },
      onGap: (gap) => {
        if (generation !== this._generation) return;
        this._call("onGap", gap);
        this.reload().catch((error) => this._call("onError", error));
      },
      onRevoked: (frame, revoked) => this._call("onRevoked", frame, revoked),
    });
    if (generation !== this._generation || this.closed) {
      await subscription.unsubscribe().catch(() => {});
      return this;
    }
    this.subscription = subscription;
    return this;
  }

  /** Stop: unsubscribe and keep the state as it is. */
  async unsubscribe() {
    this.closed = true;
    this._generation += 1;
    const subscription = this.subscription;
    this.subscription = null;
    return subscription ? subscription.unsubscribe() : null;
  }

  _call(name, ...args) {
    this._client._callSafely(this._handlers[name], ...args);
  }
}

Object.assign(RealtimeClient.prototype, {
  /**
   * GET /v1/snapshots/<channel>?<params> with the client's token: resolves with the snapshot body, rejects with
   * the ServerError subclass of the answer's code (UnauthorizedError, ChannelNotFoundError, ...).
   */
  async snapshot(channel, params = {}) {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      if (value !== undefined && value !== null) query.set(name, String(value));
    }
    const fetchImpl = this.options.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== "function") throw new RealtimeError("No fetch implementation available");
    const url = `${resolveApiUrl(this.options)}/snapshots/${encodeURIComponent(channel)}?${query}`;
    const token = await this._currentToken();
    const response = await fetchImpl(url, { headers: { Authorization: `Bearer ${token}`, Accept: "application/json" } });
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const frame = { type: "error", code: body?.code ?? "internal_error", message: body?.message ?? "", ...body };
      throw errorFromFrame(frame);
    }
    return body;
  },

  /**
   * Load a snapshot of `channel` and subscribe from its position; resolves with a SnapshotSubscription whose
   * `state` (an EntityState) stays current. handlers: {onChange(change, state), onLoad(state, snapshot),
   * onEvent(frame), onGap(gap), onRevoked(frame), onError(error)}; after a gap the state is reloaded by itself.
   */
  async subscribeFromSnapshot(channel, params = {}, handlers = {}) {
    const handle = new SnapshotSubscription(this, channel, params, handlers);
    return handle.reload();
  },
});
