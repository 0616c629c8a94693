"""Admin page "May this user subscribe?": the gateway's own answer, asked before a screen is mounted.

Lives in ``realtime`` because it asks the gateway's subscribe path (``realtime.subscribe_check``); imports flow one
way, realtime -> accounts/locations. The form is sent by GET: asking changes nothing, and the answer is a link an
operations manager can send to whoever mounts the screen.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from accounts.models import User
from locations.models import Location
from realtime.registry import CHANNELS, Scope
from realtime.subscribe_check import SubscribeAnswer, check_subscribe


class LocationChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj}" if obj.is_active else f"{obj} (inactive)"


class UserChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        suffix = "" if obj.is_active else " (inactive)"
        return f"{obj.username} ({obj.public_id}){suffix}"


class SubscribeCheckForm(forms.Form):
    user = UserChoice(queryset=User.objects.order_by("username"))
    channel = forms.ChoiceField(
        choices=[(spec.name, f"{spec.name} ({spec.permission})") for spec in CHANNELS],
    )
    location = LocationChoice(
        queryset=Location.objects.select_related("organization").order_by("organization__name", "name"),
        to_field_name="public_id",
        required=False,
        help_text="Needed by every channel except notifications (which is per user).",
    )
    filters = forms.CharField(
        required=False,
        label="Other parameters (JSON)",
        help_text='Optional, as a screen would send them, e.g. {"statuses": ["open"]} or {"station": "grill"}.',
        widget=forms.TextInput(attrs={"size": 60}),
    )

    def clean_filters(self) -> dict[str, Any]:
        raw = self.cleaned_data.get("filters") or ""
        if not raw.strip():
            return {}
        try:
            value = json.loads(raw)
        except ValueError as error:
            raise forms.ValidationError(f"Not JSON: {error}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError('Give a JSON object, e.g. {"statuses": ["open"]}.')
        return value

    def subscribe_params(self) -> dict[str, Any]:
        """The ``params`` of the subscribe a screen would send."""
        params = dict(self.cleaned_data["filters"])
        spec = next(s for s in CHANNELS if s.name == self.cleaned_data["channel"])
        location = self.cleaned_data.get("location")
        if spec.scope is Scope.LOCATION and location is not None:
            params.setdefault("location_id", location.public_id)
        return params


def check_subscription_view(request: HttpRequest) -> HttpResponse:
    """Show the form; with a channel given, answer as the gateway would."""
    if not request.user.has_perm("accounts.view_user"):
        raise PermissionDenied
    bound = "channel" in request.GET
    form = SubscribeCheckForm(request.GET if bound else None, initial=request.GET.dict())
    answer: SubscribeAnswer | None = None
    params: dict[str, Any] | None = None
    if bound and form.is_valid():
        params = form.subscribe_params()
        answer = check_subscribe(form.cleaned_data["user"], form.cleaned_data["channel"], params)
    context = {
        **admin.site.each_context(request),
        "title": "May this user subscribe?",
        "form": form,
        "answer": answer,
        "checked_user": form.cleaned_data.get("user") if answer else None,
        "subscribe_json": json.dumps({"type": "subscribe", "channel": form.cleaned_data["channel"], "params": params})
        if answer
        else None,
        "answer_json": json.dumps(answer.frame, indent=2) if answer else None,
    }
    return TemplateResponse(request, "realtime/admin_check_subscription.html", context)
