from django.contrib import admin
from django.urls import include, path

from realtime.admin import live_connections
from realtime.admin_views import check_subscription_view
from realtime.api import views as api
from realtime.api.login import LoginView, RefreshView
from realtime.metrics_view import metrics_endpoint
from realtime.views import ConsoleView

urlpatterns = [
    path(
        "admin/check-subscription/",
        admin.site.admin_view(check_subscription_view),
        name="admin-check-subscription",
    ),
    path("admin/live-connections/", admin.site.admin_view(live_connections), name="live_connections"),
    path("admin/", admin.site.urls),
    path("v1/auth/token", LoginView.as_view(), name="token_obtain_pair"),  # throttled (realtime/api/login.py)
    path("v1/auth/token/refresh", RefreshView.as_view(), name="token_refresh"),
    path("v1/", include("realtime.api.urls")),
    path("healthz", api.healthz, name="healthz"),
    path("console/", ConsoleView.as_view(), name="console"),
    path("metrics", metrics_endpoint, name="metrics"),
]
