from django.urls import path

from realtime.consumer import GatewayConsumer

websocket_urlpatterns = [
    path("v1/ws", GatewayConsumer.as_asgi()),
]
