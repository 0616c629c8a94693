// node --test tools/ts/client.test.mjs (make test-client): client.js behaviour that needs no browser or server,
// against a fake WebSocket. The browser tests (tests/e2e/test_browser.py) drive the rest through a real gateway.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  AckError,
  ConnectionLimitError,
  EntityState,
  RealtimeClient,
  ServerError,
  SubscriptionLimitError,
  Subscription,
  SubscriptionNotFoundError,
  UnauthorizedError,
  InvalidParamsError,
  errorFromFrame,
} from "../../realtime/static/realtime/client.js";

class FakeSocket {
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.sent = [];
  }
  send(data) {
    this.sent.push(JSON.parse(data));
  }
  close() {
    this.readyState = 3;
  }
}

function newClient() {
  return new RealtimeClient({ url: "ws://127.0.0.1:1/v1/ws", token: "t", WebSocket: FakeSocket });
}

test("once() runs a listener the next time only, and off() removes on() and once() listeners", () => {
  const client = newClient();
  const seen = [];
  client.once("state", (state) => seen.push(`once ${state}`));
  const always = (state) => seen.push(`on ${state}`);
  client.on("state", always);
  const never = () => seen.push("never");
  client.once("state", never);
  client.off("state", never);
  client._setState("connecting");
  client._setState("closed");
  client.off("state", always);
  client._setState("connecting");
  assert.deepEqual(seen, ["once connecting", "on connecting", "on closed"]);
  client.destroy();
});

test("the function on() and once() return removes the listener; off(type) removes them all", () => {
  const client = newClient();
  const seen = [];
  const remove = client.once("state", () => seen.push("once"));
  remove();
  client.on("state", () => seen.push("a"));
  client.on("state", () => seen.push("b"));
  client.off("state");
  client._setState("connecting");
  assert.deepEqual(seen, []);
  client.destroy();
});

test("typed errors expose every detail field of their frame", () => {
  const limit = errorFromFrame({
    type: "error", id: "req-1", code: "subscription_limit", message: "Maximum subscriptions reached",
    current: 50, limit: 50,
  });
  assert.ok(limit instanceof SubscriptionLimitError && limit instanceof ServerError);
  assert.equal(limit.current, 50);
  assert.equal(limit.limit, 50);
  assert.equal(limit.requestId, "req-1");
  assert.deepEqual(limit.details, { current: 50, limit: 50 });

  const refused = errorFromFrame({
    type: "error", id: "req-2", code: "unauthorized", message: "Not authorized to subscribe to this channel",
    channel: "orders", required_permission: "orders.read",
  });
  assert.ok(refused instanceof UnauthorizedError);
  assert.equal(refused.requiredPermission, "orders.read");
  assert.equal(refused.channel, "orders");

  const params = errorFromFrame({ type: "error", code: "invalid_params", message: "m", channel: "kds" });
  assert.ok(params instanceof InvalidParamsError);
  assert.equal(params.channel, "kds");
  assert.equal(params.requestId, null);

  const missing = errorFromFrame({ type: "error", code: "subscription_not_found", message: "m", subscription_id: "s" });
  assert.ok(missing instanceof SubscriptionNotFoundError);
  assert.equal(missing.subscriptionId, "s");

  const many = errorFromFrame({ type: "error", code: "connection_limit", message: "m", limit: 20 });
  assert.ok(many instanceof ConnectionLimitError);
  assert.equal(many.limit, 20);
});

// ----- acknowledged KDS tickets (issue 16) -----------------------------------------------------------------------

function ackScreen(client, { params = { location_id: "loc-1", ack: true }, autoAck = false, onEvent } = {}) {
  const socket = new FakeSocket("ws://x", []);
  socket.readyState = 1;
  client._socket = socket;
  const subscription = new Subscription(client, { channel: "kds", params, onEvent, autoAck });
  subscription.serverId = "sub-1";
  subscription.status = "active";
  client._subscriptions.set(subscription.key, subscription);
  client._subscriptionsByServerId.set("sub-1", subscription);
  return { socket, subscription };
}

function kdsEvent(seq, extra = {}) {
  return {
    type: "event", subscription_id: "sub-1", channel: "kds", event: "kds.ticket.created", event_id: `evt-${seq}`,
    stream: "kds:loc-1", epoch: "e1", seq, location_id: "loc-1", timestamp: "t", data: { ticket_id: `t${seq}` },
    ...extra,
  };
}

test("ack subscriptions hand each handler an ack() and take redeliveries past the seq dedupe", async () => {
  const client = newClient();
  const seen = [];
  const { socket } = ackScreen(client, { onEvent: (event, _sub, ack) => seen.push([event.redelivery ?? 0, ack]) });
  client._handleMessage(JSON.stringify(kdsEvent(1)));
  client._handleMessage(JSON.stringify(kdsEvent(1))); // a replay overlap: still dropped
  client._handleMessage(JSON.stringify(kdsEvent(1, { redelivery: 1 })));
  client._handleMessage(JSON.stringify(kdsEvent(2, { event: "kds.ticket.bumped" })));
  assert.deepEqual(seen.map(([n]) => n), [0, 1, 0]);
  assert.equal(typeof seen[0][1], "function");
  assert.equal(seen[2][1], undefined); // bumped needs no ack
  const answered = seen[0][1]();
  const sent = socket.sent.at(-1);
  assert.deepEqual({ ...sent, id: undefined }, { type: "ack", subscription_id: "sub-1", event_id: "evt-1", id: undefined });
  client._handleMessage(JSON.stringify({
    type: "response", id: sent.id, success: true, subscription_id: "sub-1", event_id: "evt-1", acked_at: "t",
    duplicate: false,
  }));
  assert.equal((await answered).duplicate, false);
  client.destroy();
});

test("autoAck acks once the handler returned, not when it threw, and refusals are AckErrors", async () => {
  const client = newClient();
  const { socket } = ackScreen(client, {
    autoAck: true,
    onEvent: (event) => {
      if (event.seq === 2) throw new Error("render failed");
    },
  });
  const errors = [];
  client.on("error", (error) => errors.push(error));
  const consoleError = console.error;
  console.error = () => {};
  try {
    client._handleMessage(JSON.stringify(kdsEvent(1)));
    client._handleMessage(JSON.stringify(kdsEvent(2)));
  } finally {
    console.error = consoleError;
  }
  assert.deepEqual(socket.sent.map((frame) => frame.event_id), ["evt-1"]);
  client._handleMessage(JSON.stringify({
    type: "error", id: socket.sent[0].id, code: "event_not_found", message: "m", event_id: "evt-1",
  }));
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.ok(errors[0] instanceof AckError && errors[0].eventId === "evt-1");
  client.destroy();
});

test("subscriptions without ack see no ack() and drop resends as duplicates", () => {
  const client = newClient();
  const seen = [];
  ackScreen(client, { params: { location_id: "loc-1" }, onEvent: (...args) => seen.push(args.length) });
  client._handleMessage(JSON.stringify(kdsEvent(1)));
  client._handleMessage(JSON.stringify(kdsEvent(1, { redelivery: 1 })));
  assert.deepEqual(seen, [2]);
  client.destroy();
});

// ----- snapshots (issue 16) ----------------------------------------------------------------------------------

const KDS_SNAPSHOT = Object.freeze({
  channel: "kds",
  location_id: "loc-xyz789",
  position: { seq: 7, epoch: "e1" },
  id_field: "ticket_id",
  removed_statuses: ["bumped"],
  items: [
    { ticket_id: "tkt-a", station: "grill", status: "new", version: 2 },
    { ticket_id: "tkt-b", station: "grill", status: "late", version: 5 },
  ],
});

test("EntityState drops stale versions, removes bumped tickets and keeps their version", () => {
  const state = new EntityState(KDS_SNAPSHOT);
  assert.equal(state.size, 2);
  assert.equal(state.apply({ ticket_id: "tkt-b", status: "new", version: 5 }), null); // what the snapshot shows
  assert.equal(state.apply({ ticket_id: "tkt-b", status: "new", version: 4 }), null); // older
  assert.equal(state.get("tkt-b").status, "late");
  assert.equal(state.apply({ ticket_id: "tkt-a", status: "bumped", version: 3 }).kind, "removed");
  assert.equal(state.has("tkt-a"), false);
  assert.equal(state.versionOf("tkt-a"), 3);
  assert.equal(state.apply({ ticket_id: "tkt-a", status: "late", version: 2 }), null); // a late echo stays gone
  assert.equal(state.apply({ ticket_id: "tkt-a", status: "recalled", version: 4 }).kind, "added"); // recalled
  assert.equal(state.apply({ ticket_id: "tkt-c", status: "new", version: 1 }).kind, "added");
  assert.equal(state.apply({ ticket_id: "tkt-c", status: "late", version: 2 }).kind, "updated");
  assert.equal(state.apply({ ticket_id: "tkt-z", status: "bumped", version: 9 }), null); // never held
  assert.equal(state.apply({ status: "new" }), null); // not about an entity
  assert.deepEqual([...state.keys()].sort(), ["tkt-a", "tkt-b", "tkt-c"]);
  assert.deepEqual(Object.keys(state.toJSON()).sort(), ["tkt-a", "tkt-b", "tkt-c"]);
});

function connectedClient(fetchImpl) {
  const sockets = [];
  class Recording extends FakeSocket {
    constructor(...args) {
      super(...args);
      sockets.push(this);
    }
  }
  const client = new RealtimeClient({
    url: "wss://gw.example.com/v1/ws",
    token: "t",
    WebSocket: Recording,
    fetch: fetchImpl,
    heartbeatIntervalMs: 1e9,
  });
  return { client, sockets };
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

test("subscribeFromSnapshot loads the snapshot, resumes from its position and keeps the state current", async () => {
  const requests = [];
  const fetchImpl = async (url, init) => {
    requests.push({ url, init });
    return { ok: true, status: 200, json: async () => structuredClone(KDS_SNAPSHOT) };
  };
  const { client, sockets } = connectedClient(fetchImpl);
  const connected = client.connect();
  await tick();
  const socket = sockets[0];
  socket.readyState = 1;
  socket.onmessage({ data: JSON.stringify({ type: "connected", user_id: "user-kim", connection_id: "c", limits: {} }) });
  await connected;

  const changes = [];
  const booting = client.subscribeFromSnapshot("kds", { location_id: "loc-xyz789", station: "grill" }, {
    onChange: (change) => changes.push(`${change.kind} ${change.id} v${change.item.version}`),
  });
  await tick();
  assert.equal(requests[0].url, "https://gw.example.com/v1/snapshots/kds?location_id=loc-xyz789&station=grill");
  assert.equal(requests[0].init.headers.Authorization, "Bearer t");
  const subscribe = socket.sent.find((frame) => frame.type === "subscribe");
  assert.deepEqual(subscribe.resume, { "kds:loc-xyz789": { seq: 7, epoch: "e1" } });
  socket.onmessage({
    data: JSON.stringify({
      type: "response", id: subscribe.id, success: true, subscription_id: "sub-1", channel: "kds",
      params: subscribe.params, resumed: { "kds:loc-xyz789": true },
    }),
  });
  const screen = await booting;
  const event = (seq, data) => socket.onmessage({
    data: JSON.stringify({
      type: "event", subscription_id: "sub-1", channel: "kds", event: "kds.ticket.late", stream: "kds:loc-xyz789",
      epoch: "e1", seq, data,
    }),
  });
  event(8, { ticket_id: "tkt-a", status: "new", version: 2 }); // already in the snapshot: dropped
  event(9, { ticket_id: "tkt-a", status: "bumped", version: 3 });
  event(10, { ticket_id: "tkt-c", status: "new", version: 1 });
  assert.deepEqual(changes, ["removed tkt-a v3", "added tkt-c v1"]);
  assert.deepEqual([...screen.state.keys()].sort(), ["tkt-b", "tkt-c"]);
  assert.equal(screen.subscription.positions.get("kds:loc-xyz789").seq, 10);
  client.destroy();
});

test("snapshot() rejects with the typed error of the answer", async () => {
  const fetchImpl = async () => ({
    ok: false,
    status: 403,
    json: async () => ({
      code: "unauthorized", message: "Not authorized to subscribe to this channel", channel: "kds",
      required_permission: "kds.read",
    }),
  });
  const { client } = connectedClient(fetchImpl);
  await assert.rejects(client.snapshot("kds", { location_id: "loc-xyz789" }), (error) => {
    assert.ok(error instanceof UnauthorizedError);
    assert.equal(error.requiredPermission, "kds.read");
    return true;
  });
  client.destroy();
});
