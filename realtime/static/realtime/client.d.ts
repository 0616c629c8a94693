/**
 * TypeScript declarations for client.js, the browser client of the gateway's WebSocket protocol at /v1/ws.
 *
 * The wire format is docs/protocol.md (machine-readable: docs/asyncapi.json); the client is described in
 * docs/client.md. Checked with `tsc --noEmit` against tools/ts/usage.ts (make test-client, run by .ci/run).
 */

// ----- the wire ------------------------------------------------------------------------------------------------

/** Server error codes (realtime/errors.py). The REST-only ones never arrive on the socket. */
export type ErrorCode =
  | "channel_not_found"
  | "unauthorized"
  | "invalid_params"
  | "subscription_limit"
  | "subscription_not_found"
  | "invalid_message"
  | "unknown_type"
  | "rate_limited"
  | "unauthenticated"
  | "token_expired"
  | "connection_limit"
  | "forbidden"
  | "unavailable"
  | "internal_error"
  | "disconnected"
  | "ack_not_enabled"
  | "event_not_found"
  | "event_not_in_subscription"
  | "not_found"
  | "method_not_allowed"
  | "unsupported_media_type"
  | "payload_too_large"
  | "idempotency_conflict"
  | "stateless_channel";

/** A request id: a string of 1-128 characters or an integer, echoed in the answer. */
export type RequestId = string | number;

/** An ISO 8601 UTC time with milliseconds and "Z", e.g. "2026-01-18T14:30:00.000Z". */
export type IsoTime = string;

export type OrderType = "dine_in" | "takeout" | "delivery" | "drive_thru";
export type OrderStatus = "open" | "preparing" | "ready" | "served" | "paid" | "closed" | "cancelled";
export type TableStatus = "available" | "seated" | "reserved";
export type InventoryAlertType = "low_stock" | "out_of_stock";

/** A location-scoped channel takes exactly one of location_id or location_ids (1-50 ids). */
export type LocationScope = { location_id: string; location_ids?: never } | { location_ids: string[]; location_id?: never };

/** The event names of each channel (realtime/registry.py). */
export interface ChannelEvents {
  orders: "order.created" | "order.updated" | "order.status_changed" | "order.paid" | "order.closed";
  kds: "kds.ticket.created" | "kds.ticket.bumped" | "kds.ticket.late" | "kds.ticket.recalled";
  inventory: "inventory.low_stock" | "inventory.out_of_stock" | "inventory.received";
  tables: "table.seated" | "table.cleared" | "table.reserved";
  analytics: "analytics.metric_update" | "analytics.hourly_summary";
  delivery: "delivery.order_received" | "delivery.driver_assigned" | "delivery.picked_up";
  // prettier-ignore
  notifications: "notification.alert" | "notification.message" | "kds.ticket_unacknowledged" | "kds.station_dark" | "kds.station_restored";
  voice: "voice.session_started" | "voice.order_completed";
}

export type ChannelName = keyof ChannelEvents;

/** The subscribe parameters of each channel (realtime/registry.py); unknown names are refused by the server. */
export interface ChannelParams {
  orders: LocationScope & { events?: ChannelEvents["orders"][]; types?: OrderType[]; statuses?: OrderStatus[] };
  /** ack: true asks for acknowledgements (issue 16): each kds.ticket.created / recalled must be acked. */
  kds: LocationScope & { events?: ChannelEvents["kds"][]; station?: string; ack?: boolean };
  inventory: LocationScope & { events?: ChannelEvents["inventory"][]; alert_types?: InventoryAlertType[] };
  tables: LocationScope & { events?: ChannelEvents["tables"][]; statuses?: TableStatus[] };
  analytics: LocationScope & { events?: ChannelEvents["analytics"][]; metrics?: string[] };
  delivery: LocationScope & { events?: ChannelEvents["delivery"][]; platforms?: string[] };
  notifications: { events?: ChannelEvents["notifications"][]; user_id?: string };
  voice: LocationScope & { events?: ChannelEvents["voice"][]; lane?: number };
}

/** Presence is per location-scoped channel and one location. */
export type PresenceChannel = Exclude<ChannelName, "notifications">;
export interface PresenceParams {
  location_id: string;
}

export interface StreamPosition {
  seq: number;
  epoch: string | null;
}

export interface Limits {
  max_subscriptions: number;
  max_message_bytes: number;
  rate_limit_per_second: number;
  rate_limit_burst: number;
  max_connections_per_user: number;
}

/** The first frame of every connection. */
export interface ConnectedFrame {
  type: "connected";
  user_id: string;
  connection_id: string;
  server_time: IsoTime;
  limits: Limits;
}

/** An event, with the stream position it was published at. */
export interface EventFrame<C extends ChannelName = ChannelName, D = Record<string, unknown>> {
  type: "event";
  subscription_id: string;
  channel: C;
  event: ChannelEvents[C];
  event_id: string;
  /** "<channel>:<location id>" (or "<channel>:<user id>" for notifications). */
  stream: string;
  epoch: string;
  seq: number;
  /** Absent on notifications, which carry user_id instead. */
  location_id?: string;
  user_id?: string;
  timestamp: IsoTime;
  data: D;
  /** Only on ack subscriptions (kds with ack: true): the n-th resend of an event nobody acknowledged yet. */
  redelivery?: number;
}

export interface PresenceMember<I = Record<string, unknown>> {
  /** Set by the server from the token, beside (not inside) user_info. */
  user_id: string;
  user_info: I;
  joined_at: IsoTime;
}

/** user_joined / user_left, from the server. */
export interface PresenceFrame {
  type: "presence";
  event: "user_joined" | "user_left";
  channel: PresenceChannel;
  location_id: string;
  data: PresenceMember;
}

/** The client's own snapshot after each (re)join. */
export interface PresenceSyncFrame {
  type: "presence";
  event: "sync";
  channel: PresenceChannel;
  params: PresenceParams;
  location_id: string | null;
  users: PresenceMember[];
}

export interface SubscriptionRevokedFrame {
  type: "subscription_revoked";
  /** Absent when the client itself found the subscription refused on a re-subscribe. */
  subscription_id?: string;
  channel: ChannelName;
  /** "permission_removed" from the server, or the error code of a refused re-subscribe. */
  reason: string;
  error?: RealtimeError;
}

/** Detail fields of each error code, beside type, id, code and message. */
export interface ErrorDetails {
  channel_not_found: {};
  unauthorized: { channel: ChannelName; required_permission: string };
  invalid_params: { channel?: string };
  subscription_limit: { current: number; limit: number };
  subscription_not_found: { subscription_id: string };
  invalid_message: {};
  unknown_type: {};
  rate_limited: { retry_after_ms: number };
  unauthenticated: {};
  token_expired: {};
  connection_limit: { limit: number };
  forbidden: {};
  unavailable: {};
  internal_error: {};
  disconnected: {};
  ack_not_enabled: { subscription_id: string };
  event_not_found: { event_id: string };
  event_not_in_subscription: { event_id: string; subscription_id: string };
  not_found: {};
  method_not_allowed: { allowed: string[] };
  unsupported_media_type: {};
  payload_too_large: { limit: number };
  idempotency_conflict: {};
  stateless_channel: { channel: string };
}

export type ErrorFrame<C extends ErrorCode = ErrorCode> = {
  [K in C]: { type: "error"; id?: RequestId; code: K; message: string } & ErrorDetails[K];
}[C];

export interface SubscribeResponse {
  type: "response";
  id?: RequestId;
  success: true;
  subscription_id: string;
  channel: ChannelName;
  params: Record<string, unknown>;
  resumed?: Record<string, boolean>;
  positions?: Record<string, { seq: number; epoch?: string }>;
}

/** The answer to an ack; a duplicate ack succeeds too, with the first ack's time. */
export interface AckResponse {
  type: "response";
  id?: RequestId;
  success: true;
  subscription_id: string;
  event_id: string;
  acked_at: IsoTime;
  duplicate: boolean;
}

/** Given to event handlers of ack subscriptions for events that need an ack (undefined for the others). */
export type AckFunction = () => Promise<AckResponse>;

export interface Response {
  type: "response";
  id?: RequestId;
  success: true;
  [field: string]: unknown;
}

export interface SubscriptionListEntry {
  id: string;
  channel: ChannelName;
  params: Record<string, unknown>;
  created_at: IsoTime;
  /** Added by the client: the local Subscription this entry belongs to, if any. */
  subscription: Subscription | null;
}

export type ServerFrame =
  | ConnectedFrame
  | EventFrame
  | PresenceFrame
  | SubscriptionRevokedFrame
  | ErrorFrame
  | SubscribeResponse
  | Response
  | { type: "pong"; id?: RequestId; server_time: IsoTime }
  | { type: "subscriptions_list"; id?: RequestId; subscriptions: Omit<SubscriptionListEntry, "subscription">[] }
  | { type: "presence_list_response"; id?: RequestId; channel: PresenceChannel; params: PresenceParams; users: PresenceMember[] };

// ----- constants -----------------------------------------------------------------------------------------------

export type ConnectionStateValue = "connecting" | "connected" | "reconnecting" | "closed";
export declare const ConnectionState: Readonly<{
  CONNECTING: "connecting";
  CONNECTED: "connected";
  RECONNECTING: "reconnecting";
  CLOSED: "closed";
}>;

export declare const CloseCode: Readonly<{
  NORMAL: 1000;
  GOING_AWAY: 1001;
  ABNORMAL: 1006;
  POLICY_VIOLATION: 1008;
  MESSAGE_TOO_BIG: 1009;
  SERVICE_RESTART: 1012;
  TRY_AGAIN_LATER: 1013;
  HEARTBEAT_TIMEOUT: 4000;
  DISCONNECTED: 4000;
  UNAUTHENTICATED: 4401;
  FORBIDDEN: 4403;
  SLOW_CONSUMER: 4408;
  TOO_MANY_CONNECTIONS: 4429;
}>;

// ----- errors --------------------------------------------------------------------------------------------------

/** Client-side codes, beside the server's ErrorCode. */
export type ClientErrorCode =
  | "error"
  | "connection_lost"
  | "timeout"
  | "client_closed"
  | "policy_violation"
  | "reconnect_failed"
  | "bad_frame"
  | "token"
  | "connect_failed";

export declare class RealtimeError extends Error {
  constructor(
    message: string,
    options?: { code?: ErrorCode | ClientErrorCode; frame?: object | null; closeCode?: number | null },
  );
  readonly code: ErrorCode | ClientErrorCode;
  /** The whole server frame, when there is one. */
  readonly frame: object | null;
  readonly closeCode: number | null;
}

/** The server answered with {"type": "error"}. */
export declare class ServerError<C extends ErrorCode = ErrorCode> extends RealtimeError {
  constructor(frame: ErrorFrame<C>);
  readonly code: C;
  readonly frame: ErrorFrame<C>;
  /** The id of the request this answers; null for errors outside any request. */
  readonly requestId: RequestId | null;
  /** Every detail field of the frame (all but type, id, code, message). */
  readonly details: ErrorDetails[C];
}

export declare class ChannelNotFoundError extends ServerError<"channel_not_found"> {}
export declare class UnauthorizedError extends ServerError<"unauthorized"> {
  /** e.g. "orders.read". */
  readonly requiredPermission: string | null;
  readonly channel: ChannelName | null;
}
export declare class InvalidParamsError extends ServerError<"invalid_params"> {
  readonly channel: string | null;
}
export declare class SubscriptionLimitError extends ServerError<"subscription_limit"> {
  readonly current: number | null;
  readonly limit: number | null;
}
export declare class SubscriptionNotFoundError extends ServerError<"subscription_not_found"> {
  readonly subscriptionId: string | null;
}
export declare class InvalidMessageError extends ServerError<"invalid_message" | "unknown_type"> {}
export declare class RateLimitedError extends ServerError<"rate_limited"> {
  /** How long to wait before trying again (1000 when the server named no time). */
  readonly retryAfterMs: number;
}
export declare class AuthenticationError extends ServerError<"unauthenticated" | "token_expired"> {}
export declare class ConnectionLimitError extends ServerError<"connection_limit"> {
  readonly limit: number | null;
}
export declare class ForbiddenError extends ServerError<"forbidden"> {}
export declare class UnavailableError extends ServerError<"unavailable"> {}
export declare class DisconnectedError extends ServerError<"disconnected"> {}
export declare class InternalServerError extends ServerError<"internal_error"> {}
/** The server refused an ack (issue 16). */
export declare class AckError extends ServerError<"ack_not_enabled" | "event_not_found" | "event_not_in_subscription"> {
  readonly eventId: string | null;
}

/** The typed error for a server error frame (ServerError for codes without a class of their own). */
export declare function errorFromFrame(frame: ErrorFrame): ServerError;

/** The connection dropped before the server answered. */
export declare class ConnectionLostError extends RealtimeError {
  constructor(message?: string);
  readonly code: "connection_lost";
}

/** The server did not answer within requestTimeoutMs. */
export declare class RequestTimeoutError extends RealtimeError {
  constructor(frame: { type: string; id?: RequestId });
  readonly code: "timeout";
}

/** The application closed the client, or the server refused it for good (4403, 4429, 1008, repeated 4401). */
export declare class ConnectionClosedError extends RealtimeError {
  constructor(message?: string, options?: { closeCode?: number | null; code?: ErrorCode | ClientErrorCode });
}

// ----- helpers -------------------------------------------------------------------------------------------------

export declare function stableStringify(value: unknown): string;
/** The `exp` claim (seconds since the epoch) of a JWT, unverified; null if there is none. */
export declare function readTokenExpiry(token: string): number | null;
export declare function backoffDelayMs(
  attempt: number,
  options: { initialMs: number; maxMs: number; factor: number; random?: () => number },
): number;

// ----- the client ----------------------------------------------------------------------------------------------

export interface WebSocketLike {
  readonly readyState: number;
  onmessage: ((message: { data: string }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface RealtimeClientOptions {
  /** Resolved against the page; http(s) becomes ws(s). Default "/v1/ws". */
  url?: string;
  /** The access token (JWT from POST /v1/auth/token). */
  token?: string | null;
  /** Returns a fresh access token (null = give up); called after 4401 and before the token expires. */
  getToken?: (() => Promise<string | null> | string | null) | null;
  /** "subprotocol" (default) sends ["bearer", token]; "query" sends ?access_token=. */
  authMethod?: "subprotocol" | "query";
  heartbeatIntervalMs?: number;
  heartbeatTimeoutMs?: number;
  requestTimeoutMs?: number;
  reconnectInitialDelayMs?: number;
  reconnectMaxDelayMs?: number;
  reconnectFactor?: number;
  maxReconnectAttempts?: number;
  serviceRestartDelayMs?: number;
  slowConsumerDelayMs?: number;
  tokenRefreshMarginMs?: number;
  maxAuthRetries?: number;
  maxBufferedOrphanEvents?: number;
  /** Another WebSocket implementation (tests, Node). Default globalThis.WebSocket. */
  WebSocket?: new (url: string, protocols?: string[]) => WebSocketLike;
  /** The REST base for snapshot(), e.g. "https://gw.example.com/v1". Default: the socket URL's origin + "/v1". */
  apiUrl?: string;
  /** Another fetch implementation for snapshot(). Default globalThis.fetch. */
  fetch?: (url: string, init: { headers: Record<string, string> }) => Promise<FetchResponseLike>;
}

/** What snapshot() needs of a fetch Response. */
export interface FetchResponseLike {
  ok: boolean;
  status: number;
  json(): Promise<unknown>;
}

export interface GapInfo<C extends ChannelName = ChannelName> {
  subscription: Subscription<C>;
  stream: string;
  lastPosition: StreamPosition | null;
  response: SubscribeResponse;
}

export interface SubscribeOptions<C extends ChannelName = ChannelName> {
  /** The server could not replay what was missed on `stream`: reload that state over REST. */
  onGap?: (gap: GapInfo<C>) => void;
  /** The server dropped the subscription (permission lost, ...). */
  onRevoked?: (frame: SubscriptionRevokedFrame, subscription: Subscription<C>) => void;
  /** With params.ack: acknowledge each event that needs it once the handler returned (or its promise resolved). */
  autoAck?: boolean;
  /** Start from these positions (e.g. a snapshot's) instead of where the streams stand now. */
  resumeFrom?: Record<string, StreamPosition | { seq: number; epoch?: string | null }>;
}

/** An event handler; on ack subscriptions it gets ack() for kds.ticket.created / recalled. */
export type EventHandler<C extends ChannelName = ChannelName, D = Record<string, unknown>> = (
  event: EventFrame<C, D>,
  subscription: Subscription<C>,
  ack: AckFunction | undefined,
) => void | Promise<void>;

export type SubscriptionStatus = "pending" | "active" | "resubscribing" | "closed";

/** The application's handle: stable across reconnects while the server's subscription_id changes. */
export declare class Subscription<C extends ChannelName = ChannelName> {
  /** Client-side identity ("csub-1"); never changes. */
  readonly key: string;
  readonly channel: C;
  readonly params: ChannelParams[C];
  /** The server's subscription_id on the current connection; null while (re)subscribing. */
  readonly serverId: string | null;
  readonly status: SubscriptionStatus;
  /** Last position seen per stream, sent as `resume` after a reconnect. */
  readonly positions: Map<string, StreamPosition>;
  readonly eventCount: number;
  readonly createdAt: Date;
  /** Why it closed: "unsubscribed", "permission_removed", an error code, ... */
  readonly closeReason: string | null;
  readonly isActive: boolean;
  /** Set by SubscribeOptions.autoAck. */
  readonly autoAck: boolean;
  unsubscribe(): Promise<Response | null>;
  resumeRequest(): Record<string, StreamPosition> | null;
  toJSON(): {
    key: string;
    serverId: string | null;
    channel: C;
    params: ChannelParams[C];
    status: SubscriptionStatus;
    eventCount: number;
  };
}

/** What each listener type of on()/once()/off() receives. */
export interface ClientEventMap {
  state: [state: ConnectionStateValue];
  connected: [frame: ConnectedFrame];
  disconnected: [info: { code: number; reason: string }];
  subscription: [subscription: Subscription];
  event: [frame: EventFrame, subscription: Subscription];
  presence: [frame: PresenceFrame | PresenceSyncFrame];
  gap: [gap: GapInfo];
  revoked: [info: { subscription: Subscription; frame: SubscriptionRevokedFrame }];
  error: [error: RealtimeError];
  frame: [frame: ServerFrame];
}

export type ClientEventType = keyof ClientEventMap;
export type Listener<K extends ClientEventType> = (...args: ClientEventMap[K]) => void;

export declare class RealtimeClient {
  constructor(options: RealtimeClientOptions);
  readonly options: Required<RealtimeClientOptions>;
  readonly state: ConnectionStateValue;
  /** The server's "connected" frame of the current connection, or null. */
  readonly session: ConnectedFrame | null;
  readonly subscriptions: Subscription[];
  readonly presence: { channel: PresenceChannel; params: PresenceParams; userInfo: Record<string, unknown> }[];

  /** Add a listener; returns a function that removes it. */
  on<K extends ClientEventType>(type: K, listener: Listener<K>): () => void;
  /** Add a listener for the next time only; returns a function that removes it if it has not run. */
  once<K extends ClientEventType>(type: K, listener: Listener<K>): () => void;
  /** Remove a listener given to on() or once(); without one, every listener of that type. */
  off<K extends ClientEventType>(type: K, listener?: Listener<K>): void;
  onPresence(listener: Listener<"presence">): () => void;

  /** Resolves with the "connected" frame; rejects if the server refuses for good. */
  connect(): Promise<ConnectedFrame>;
  close(code?: number, reason?: string): void;
  destroy(): void;

  /** Resolves once the server accepted it; rejects with a ServerError subclass if refused. */
  subscribe<C extends ChannelName, D = Record<string, unknown>>(
    channel: C,
    params: ChannelParams[C],
    onEvent?: EventHandler<C, D>,
    options?: SubscribeOptions<C>,
  ): Promise<Subscription<C>>;
  /** Acknowledge an event of an ack subscription (what the handler's ack() does). */
  ack(subscription: Subscription<"kds">, event: EventFrame<"kds"> | string): Promise<AckResponse>;
  unsubscribe(subscriptionOrKey: Subscription | string): Promise<Response | null>;
  unsubscribeAll(): Promise<Response | null>;
  listSubscriptions(): Promise<SubscriptionListEntry[]>;

  presenceJoin<I extends Record<string, unknown>>(
    channel: PresenceChannel,
    params: PresenceParams,
    userInfo?: I,
  ): Promise<Response>;
  presenceLeave(channel: PresenceChannel, params: PresenceParams): Promise<Response | null>;
  presenceList(channel: PresenceChannel, params: PresenceParams): Promise<PresenceMember[]>;

  /** GET /v1/snapshots/<channel>: the channel's state and its position; rejects with a ServerError subclass. */
  snapshot<C extends SnapshotChannel, D extends SnapshotItem<C> = SnapshotItem<C>>(
    channel: C,
    params: SnapshotParams[C],
  ): Promise<Snapshot<C, D>>;
  /** Load a snapshot, then subscribe with resume from its position; the handle's `state` stays current. */
  subscribeFromSnapshot<C extends SnapshotChannel, D extends SnapshotItem<C> = SnapshotItem<C>>(
    channel: C,
    params: SnapshotParams[C],
    handlers?: SnapshotHandlers<C, D>,
  ): Promise<SnapshotSubscription<C, D>>;

  /** Round trip in milliseconds. */
  ping(): Promise<number>;
  /** Hand the open connection a fresh token (the `authenticate` message). */
  authenticate(token: string): Promise<(Response & { user_id: string; expires_at: number }) | null>;
}

// ----- snapshots (docs/protocol.md, "Snapshots and versions") --------------------------------------------------

/** The channels with state: GET /v1/snapshots/<channel>. */
export type SnapshotChannel = "orders" | "kds" | "tables";

/** A snapshot takes one location, and kds one station. */
export interface SnapshotParams {
  orders: { location_id: string };
  kds: { location_id: string; station?: string };
  tables: { location_id: string };
}

/** Every entity carries the version of its last save. */
export interface Versioned {
  version: number;
}

export interface OrderItem extends Versioned {
  order_id: string;
  location_id: string;
  type: OrderType;
  status: OrderStatus;
  total: string;
  table: string | null;
  created_at: IsoTime | null;
  updated_at: IsoTime | null;
}

export interface TicketItem extends Versioned {
  ticket_id: string;
  station: string;
  order_id: string | null;
  items: unknown[];
  status: "new" | "late" | "recalled" | "bumped";
}

export interface TableItem extends Versioned {
  table_id: string;
  label: string;
  seats: number;
  status: TableStatus;
}

/** The `data` of a channel's events, which is also the shape of its snapshot items. */
export interface SnapshotItems {
  orders: OrderItem;
  kds: TicketItem;
  tables: TableItem;
}
export type SnapshotItem<C extends SnapshotChannel> = SnapshotItems[C];

export interface Snapshot<C extends SnapshotChannel = SnapshotChannel, D = SnapshotItem<C>> {
  channel: C;
  location_id: string;
  /** Apply every event with a greater seq (resume from here) and the items stay the current state. */
  position: { seq: number; epoch: string };
  /** The field of items and event data that names the entity: order_id, ticket_id or table_id. */
  id_field: string;
  /** An event with one of these data.status values removes the entity. */
  removed_statuses: string[];
  items: D[];
}

export interface EntityChange<D = Record<string, unknown>> {
  kind: "added" | "updated" | "removed";
  id: string;
  item: D;
  previous: D | null;
}

/** Entities by id, fed by a snapshot and the events after it; drops stale versions, removes done entities. */
export declare class EntityState<D = Record<string, unknown>> implements Iterable<[string, D]> {
  constructor(snapshot?: Snapshot<SnapshotChannel, D> | null);
  readonly idField: string | null;
  readonly removedStatuses: Set<string>;
  readonly size: number;
  load(snapshot: Snapshot<SnapshotChannel, D>): this;
  /** The change, or null when the data was stale (version not greater than the one held) or not an entity. */
  apply(data: D): EntityChange<D> | null;
  applyEvent(frame: { data: D }): EntityChange<D> | null;
  get(id: string): D | undefined;
  has(id: string): boolean;
  /** The version held, also for a removed entity; undefined if never seen. */
  versionOf(id: string): number | undefined;
  keys(): IterableIterator<string>;
  values(): IterableIterator<D>;
  entries(): IterableIterator<[string, D]>;
  [Symbol.iterator](): IterableIterator<[string, D]>;
  toJSON(): Record<string, D>;
}

export interface SnapshotHandlers<C extends SnapshotChannel = SnapshotChannel, D = SnapshotItem<C>> {
  /** An entity was added, updated or removed by an event. */
  onChange?: (change: EntityChange<D> & { event: EventFrame<C, D> }, state: EntityState<D>) => void;
  /** A snapshot was loaded into the state (at the start, and again after a gap). */
  onLoad?: (state: EntityState<D>, snapshot: Snapshot<C, D>) => void;
  /** Every event, also the stale ones the state drops. */
  onEvent?: (event: EventFrame<C, D>, subscription: Subscription<C>) => void;
  /** The history did not cover a reconnect's gap; the state is reloaded from a new snapshot by itself. */
  onGap?: (gap: GapInfo<C>) => void;
  onRevoked?: (frame: SubscriptionRevokedFrame, subscription: Subscription<C>) => void;
  /** Reloading after a gap failed. */
  onError?: (error: RealtimeError) => void;
}

export declare class SnapshotSubscription<C extends SnapshotChannel = SnapshotChannel, D = SnapshotItem<C>> {
  readonly channel: C;
  readonly params: SnapshotParams[C];
  readonly state: EntityState<D>;
  /** The snapshot the state was last loaded from. */
  readonly snapshot: Snapshot<C, D> | null;
  /** The live subscription (null while reloading). */
  readonly subscription: Subscription<C> | null;
  readonly closed: boolean;
  /** Load a fresh snapshot and subscribe again from its position. */
  reload(): Promise<this>;
  unsubscribe(): Promise<Response | null>;
}
