from django.urls import path
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView

from realtime.api import publish, views
from realtime.views import AsyncAPIView

urlpatterns = [
    path("events", publish.publish_event, name="publish_event"),
    path("events/batch", publish.publish_batch, name="publish_batch"),
    path("locations", views.LocationListView.as_view(), name="location_list"),
    path("channels", views.ChannelListView.as_view(), name="channel_list"),
    path("streams/<str:stream>/events", views.StreamEventsView.as_view(), name="stream_events"),
    path("snapshots/<str:channel>", views.SnapshotView.as_view(), name="snapshot"),
    path("asyncapi.json", AsyncAPIView.as_view(), name="asyncapi"),
    # The OpenAPI 3.1 description of this API (realtime/api/openapi.py) and Swagger UI over it, offline.
    path("openapi.json", SpectacularJSONAPIView.as_view(), name="openapi"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="openapi"), name="swagger_ui"),
]
