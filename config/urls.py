from django.contrib import admin
from django.urls import include, path

from realtime.api import views as api
from realtime.api.login import LoginView, RefreshView
from realtime.views import ConsoleView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("v1/auth/token", LoginView.as_view(), name="token_obtain_pair"),  # throttled (realtime/api/login.py)
    path("v1/auth/token/refresh", RefreshView.as_view(), name="token_refresh"),
    path("v1/", include("realtime.api.urls")),
    path("healthz", api.healthz, name="healthz"),
    path("console/", ConsoleView.as_view(), name="console"),
]
