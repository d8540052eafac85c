from django.urls import path

from . import views

urlpatterns = [
    path("robots/<str:code>/", views.robot_handler, name="robot-handler"),
]
