"""Endpoints Bitrix24 itself posts to (install page, app and portal events), and the health check."""
from django.urls import path

from . import views

urlpatterns = [
    path("healthz/", views.healthz, name="healthz"),
    path("metrics", views.metrics, name="metrics"),
    path("b24/install/", views.install, name="b24-install"),
    path("b24/events/", views.events, name="b24-events"),
]
