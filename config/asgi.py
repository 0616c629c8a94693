"""ASGI entry point: HTTP through Django, WebSocket ``/v1/ws`` through the gateway consumer."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()  # set up Django before importing code that touches models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from realtime.api.fastpath import PublishFastPath  # noqa: E402
from realtime.daphne_support import install_daphne_support  # noqa: E402
from realtime.heartbeat import install_daphne_startup  # noqa: E402
from realtime.lifecycle import LifespanShutdown, install_daphne_shutdown_trigger  # noqa: E402
from realtime.proxy import TrustedProxyHeaders  # noqa: E402
from realtime.routing import websocket_urlpatterns  # noqa: E402

install_daphne_support()  # bounded send buffers (4408) and RFC server close codes (1008, 1009, 1012)
install_daphne_shutdown_trigger()  # SIGTERM closes connections with 1012 and leaves presence first
install_daphne_startup()  # the presence heartbeat starts with the process, as the lifespan startup does on uvicorn

application = LifespanShutdown(
    ProtocolTypeRouter(
        {
            # Static files (the console's) are answered before Django's middleware; everything else is untouched.
            # Every middleware left is async-capable, so async views run without a thread. POST /v1/events and
            # /v1/events/batch are answered before Django, by the same rules (realtime/api/fastpath.py).
            "http": PublishFastPath(ASGIStaticFilesHandler(django_asgi_app)),
            "websocket": URLRouter(websocket_urlpatterns),
        }
    )
)
# The client address from X-Forwarded-For only behind TRUSTED_PROXIES (lifespan passes through untouched);
# an ASGI application either way.
application = TrustedProxyHeaders(application)  # type: ignore[assignment]
