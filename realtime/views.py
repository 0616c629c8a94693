from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_safe
from django.views.generic import TemplateView

from realtime.asyncapi import asyncapi_document


class ConsoleView(TemplateView):
    """The staff console: a page of static assets that signs in and talks to /v1/ws itself."""

    template_name = "realtime/console.html"


@require_safe
def asyncapi_json(request: HttpRequest) -> JsonResponse:
    """The AsyncAPI 3.0 document of /v1/ws; public, like the protocol it describes."""
    return JsonResponse(asyncapi_document(), json_dumps_params={"ensure_ascii": False})
