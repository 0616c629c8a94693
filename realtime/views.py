from typing import Any

from django.views.generic import TemplateView
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from realtime.asyncapi import asyncapi_document


class ConsoleView(TemplateView):
    """The staff console: a page of static assets that signs in and talks to /v1/ws itself."""

    template_name = "realtime/console.html"


class AsyncAPIView(APIView):
    """``GET /v1/asyncapi.json``: the AsyncAPI 3.0 document of /v1/ws; public, like the protocol it describes."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    schema = None  # a description of /v1/ws, not an operation of the REST API: left out of /v1/openapi.json

    def get(self, request: Request) -> Response:
        return Response(asyncapi_document())
