from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Realtime gateway"

    def ready(self) -> None:
        from realtime import checks  # noqa: F401  (registers the registry system check)
        from realtime.api.login import connect_receivers

        connect_receivers()  # deleting a login lockout in the admin clears its count
