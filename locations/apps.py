from django.apps import AppConfig


class LocationsConfig(AppConfig):
    name = "locations"
    verbose_name = "Organizations, locations and restaurant records"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from locations import receivers  # noqa: F401  (connects the model-save signals)
        from locations.snapshots import register_snapshots

        register_snapshots()  # what GET /v1/snapshots/<channel> answers (realtime.snapshots)
