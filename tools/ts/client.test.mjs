// node --test tools/ts/client.test.mjs (make test-client): client.js behaviour that needs no browser or server,
// against a fake WebSocket. The browser tests (tests/e2e/test_browser.py) drive the rest through a real gateway.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  ConnectionLimitError,
  RealtimeClient,
  ServerError,
  SubscriptionLimitError,
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
