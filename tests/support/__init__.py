"""Helpers for the tests, and nothing else: conftest modules hold only fixtures and import these.

- ``services``: is Redis / PostgreSQL / redis-server / Chromium here, and skip or fail (REQUIRE_SERVICES,
  REQUIRE_BROWSER) when not;
- ``ports``: free loopback ports and whether one answers;
- ``processes``: gateway processes (``Gateway``), private ``redis-server`` (``RedisServer``), ``manage.py``, the
  e2e database, and the one health poll;
- ``asgi``: HTTP requests and WebSocket clients straight into ``config.asgi.application``;
- ``rest``: JSON over real HTTP to a gateway process, and signing in;
- ``wsclient``: a protocol client over a real socket;
- ``browser``: Debian's Chromium through Playwright and the console page's helpers;
- ``outbox``: one relay pass by hand (``drain_outbox``);
- ``threads``: database writers racing each other (``race``).
- ``kitchen_service``: a kitchen in service as a process of its own (threads saving tickets through the ORM).
"""
