from django.urls import path

from . import views

urlpatterns = [
    path("webhooks/<str:provider>/<str:secret>/", views.webhook, name="provider-webhook"),
    path("files/<str:token>/", views.signed_file, name="signed-file"),
]
