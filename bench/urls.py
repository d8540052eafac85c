"""The product's URLs plus ``/bench/noop/``: a plain Django view (all middleware, no work) as the yardstick."""
from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from config.urls import urlpatterns as product_urlpatterns


@csrf_exempt
def noop(request):
    return HttpResponse(b"ok", content_type="text/plain")


urlpatterns = [path("bench/noop/", noop), *product_urlpatterns]
