from django.views.generic import TemplateView


class ConsoleView(TemplateView):
    """The staff console: a page of static assets that signs in and talks to /v1/ws itself."""

    template_name = "realtime/console.html"
