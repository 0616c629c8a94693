"""A start-up check of the channel registry: a broken entry fails ``manage.py check``, not a subscriber."""

from __future__ import annotations

import re
from typing import Any

from django.core import checks

from accounts.permissions import CATALOG
from realtime.registry import CHANNELS, ChannelParams, LocationParams, Scope
from realtime.streams import group_for_stream

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@checks.register()
def check_channel_registry(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    names = [spec.name for spec in CHANNELS]
    for duplicate in {n for n in names if names.count(n) > 1}:
        errors.append(checks.Error(f"Channel '{duplicate}' is registered twice", id="realtime.E001"))
    for spec in CHANNELS:
        where = f"channel '{spec.name}'"
        if not _NAME.match(spec.name):
            errors.append(checks.Error(f"{where}: name must be a short lowercase identifier", id="realtime.E002"))
        if spec.permission not in CATALOG:
            errors.append(
                checks.Error(f"{where}: permission {spec.permission} is not in the catalog", id="realtime.E003")
            )
        if not spec.events or len(set(spec.events)) != len(spec.events):
            errors.append(checks.Error(f"{where}: needs distinct event names", id="realtime.E004"))
        if not issubclass(spec.params, ChannelParams):
            errors.append(checks.Error(f"{where}: params must extend ChannelParams", id="realtime.E005"))
        expected_base = LocationParams if spec.scope is Scope.LOCATION else ChannelParams
        if not issubclass(spec.params, expected_base):
            errors.append(checks.Error(f"{where}: params do not fit scope {spec.scope}", id="realtime.E006"))
        fields = spec.params.model_fields
        filter_params = [f.param for f in spec.field_filters] + [f.param for f in spec.event_name_filters]
        for param in filter_params:
            if param not in fields:
                errors.append(checks.Error(f"{where}: filter reads unknown param {param}", id="realtime.E007"))
        for name_filter in spec.event_name_filters:
            if not any(e.startswith(name_filter.event_prefix) for e in spec.events):
                errors.append(
                    checks.Error(f"{where}: no event starts with {name_filter.event_prefix}", id="realtime.E008")
                )
        try:
            group_for_stream(spec.stream("loc-" + "x" * 60))
        except ValueError:
            errors.append(checks.Error(f"{where}: its group names can exceed Channels' limit", id="realtime.E009"))
    return errors
