// Compiled with `tsc --noEmit` (make test-client): what an application writes against client.d.ts must type-check,
// and the @ts-expect-error lines must stay errors, so the declarations keep rejecting wrong use.
import {
  CloseCode,
  ConnectionClosedError,
  ConnectionState,
  RealtimeClient,
  RealtimeError,
  ServerError,
  SubscriptionLimitError,
  UnauthorizedError,
  EntityState,
  errorFromFrame,
  AckError,
  type AckResponse,
  type ConnectedFrame,
  type TicketItem,
  type ErrorFrame,
  type EventFrame,
  type Subscription,
} from "../../realtime/static/realtime/client.js";

interface OrderData {
  order_id: string;
  status: string;
}

export async function main(refreshAccess: () => Promise<string>): Promise<void> {
  const client = new RealtimeClient({ token: "jwt", getToken: refreshAccess, authMethod: "query" });
  const offState = client.on("state", (state) => {
    const known: string = state === ConnectionState.CONNECTED ? "up" : state;
    console.log(known);
  });
  client.once("connected", (frame: ConnectedFrame) => console.log(frame.limits.max_subscriptions));
  const onError = (error: RealtimeError) => console.log(error.code, error.closeCode);
  client.on("error", onError);
  client.off("error", onError);
  client.off("frame");
  offState();

  const session = await client.connect();
  console.log(session.user_id, session.server_time);

  const orders: Subscription<"orders"> = await client.subscribe<"orders", OrderData>(
    "orders",
    { location_id: "loc-xyz789", statuses: ["open", "preparing"], events: ["order.created"] },
    (event: EventFrame<"orders", OrderData>) => console.log(event.seq, event.stream, event.data.order_id),
    {
      onGap: ({ stream, lastPosition }) => console.log(stream, lastPosition?.seq),
      onRevoked: (frame) => console.log(frame.reason),
    },
  );
  console.log(orders.key, orders.serverId, orders.status, orders.positions.get("orders:loc-xyz789")?.epoch);
  await client.subscribe("kds", { location_ids: ["loc-a", "loc-b"], station: "grill" });
  // Acknowledged tickets (issue 16): ack() by hand, or autoAck once the handler returned.
  const screen = await client.subscribe<"kds", { ticket_id: string }>(
    "kds",
    { location_id: "loc-xyz789", station: "grill", ack: true },
    async (event, _subscription, ack) => {
      console.log(event.data.ticket_id, event.redelivery ?? 0);
      if (ack) {
        const answer: AckResponse = await ack();
        console.log(answer.acked_at, answer.duplicate);
      }
    },
  );
  await client.ack(screen, "evt-123");
  await client.subscribe("kds", { location_id: "loc-xyz789", ack: true }, () => {}, { autoAck: true });
  // @ts-expect-error: ack is a boolean
  await client.subscribe("kds", { location_id: "loc-xyz789", ack: "yes" });
  const ackError = errorFromFrame({ type: "error", code: "event_not_found", message: "m", event_id: "evt-1" });
  if (ackError instanceof AckError) console.log(ackError.eventId);
  await client.subscribe("notifications", {});

  // @ts-expect-error: a typo in a filter name is refused, as the server refuses it
  await client.subscribe("orders", { location_id: "loc-xyz789", statues: ["open"] });
  // @ts-expect-error: not a status of orders
  await client.subscribe("orders", { location_id: "loc-xyz789", statuses: ["seated"] });
  // @ts-expect-error: exactly one of location_id and location_ids
  await client.subscribe("tables", { location_id: "a", location_ids: ["b"] });
  // @ts-expect-error: no such channel
  await client.subscribe("payments", { location_id: "a" });
  // @ts-expect-error: no such listener type
  client.on("message", () => {});

  try {
    await client.subscribe("analytics", { location_id: "loc-xyz789" });
  } catch (error) {
    if (error instanceof UnauthorizedError) {
      const permission: string | null = error.requiredPermission;
      console.log(permission, error.channel, error.details.required_permission, error.requestId);
    } else if (error instanceof SubscriptionLimitError) {
      const used: number | null = error.current;
      console.log(used, error.limit, error.details.current, error.details.limit);
    } else if (error instanceof ConnectionClosedError && error.closeCode === CloseCode.TOO_MANY_CONNECTIONS) {
      console.log("too many connections");
    }
  }

  const frame: ErrorFrame<"rate_limited"> = { type: "error", code: "rate_limited", message: "slow", retry_after_ms: 5 };
  const typed: ServerError = errorFromFrame(frame);
  console.log(typed.code);
  // @ts-expect-error: subscription_limit frames carry current and limit
  const incomplete: ErrorFrame<"subscription_limit"> = { type: "error", code: "subscription_limit", message: "m" };
  console.log(incomplete);

  await client.presenceJoin("orders", { location_id: "loc-xyz789" }, { name: "Sarah Server", role: "server" });
  const users = await client.presenceList("orders", { location_id: "loc-xyz789" });
  console.log(users.map((user) => `${user.user_id} ${user.joined_at}`));
  // @ts-expect-error: notifications have no presence
  await client.presenceJoin("notifications", { location_id: "loc-xyz789" });
  const listed = await client.listSubscriptions();
  console.log(listed[0]?.subscription?.key, await client.ping());
  await orders.unsubscribe();
  await bootKitchenScreen(client);
  client.close(CloseCode.NORMAL);
}

/** A kitchen screen that boots mid-service: the open tickets of its station, then every change after them. */
export async function bootKitchenScreen(client: RealtimeClient): Promise<void> {
  const snapshot = await client.snapshot("kds", { location_id: "loc-xyz789", station: "grill" });
  const first: TicketItem | undefined = snapshot.items[0];
  console.log(snapshot.position.seq, snapshot.position.epoch, snapshot.id_field, first?.ticket_id, first?.version);
  const screen = await client.subscribeFromSnapshot(
    "kds",
    { location_id: "loc-xyz789", station: "grill" },
    {
      onChange: ({ kind, id, item, event }, state) => console.log(kind, id, item.status, event.seq, state.size),
      onLoad: (state, loaded) => console.log(state.size, loaded.position.seq),
      onGap: ({ stream }) => console.log("reloading", stream),
    },
  );
  for (const ticket of screen.state.values()) console.log(ticket.ticket_id, ticket.station, ticket.version);
  console.log(screen.state.get("tkt-1")?.status, screen.state.versionOf("tkt-1"), screen.subscription?.serverId);
  const orders = new EntityState<{ order_id: string; status: string; version: number }>();
  orders.load(await client.snapshot("orders", { location_id: "loc-xyz789" }));
  console.log(orders.apply({ order_id: "ord-1", status: "closed", version: 3 })?.kind);
  // @ts-expect-error: analytics has no state to snapshot
  await client.snapshot("analytics", { location_id: "loc-xyz789" });
  // @ts-expect-error: only kds snapshots take a station
  await client.snapshot("orders", { location_id: "loc-xyz789", station: "grill" });
  await screen.unsubscribe();
}
