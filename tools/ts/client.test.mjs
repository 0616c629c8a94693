// node --test tools/ts/client.test.mjs (make test-client): client.js behaviour that needs no browser or server,
// against a fake WebSocket. The browser tests (tests/e2e/test_browser.py) drive the rest through a real gateway.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  AckError,
  ConnectionLimitError,
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
