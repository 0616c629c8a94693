"""ASGI entry point: HTTP through Django, WebSocket ``/v1/ws`` through the gateway consumer."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()  # set up Django before importing code that touches models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from realtime.backpressure import install_daphne_send_buffer_limit  # noqa: E402
from realtime.lifecycle import LifespanShutdown  # noqa: E402
from realtime.routing import websocket_urlpatterns  # noqa: E402

install_daphne_send_buffer_limit()  # a client that stops reading is closed (4408), not buffered forever

application = LifespanShutdown(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": URLRouter(websocket_urlpatterns),
        }
    )
)
