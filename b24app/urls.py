from django.urls import include, path

from . import views

urlpatterns = [
    path("b24/install/", views.install, name="b24-install"),
    path("b24/events/", views.events, name="b24-events"),
    path("bizproc/", include("bizproc_ext.urls")),
    path("signing/", include("signing.urls")),
    path("", include("b24app.ui_urls")),
]
