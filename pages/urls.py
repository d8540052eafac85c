"""The pages a portal opens in its frames: the app slider and the placements.

``/app/`` is the application's main URL (Bitrix24 POSTs to it); every other page carries the signed
token it issues (b24app/frames.py).  The robot settings placement keeps the URL that registered robots
point at (``bizproc/settings/<code>/``).
"""
from django.urls import path

from . import card_send, card_settings, card_tab, robot_settings, settings_views, views

urlpatterns = [
    path("bizproc/settings/<str:code>/", robot_settings.robot_settings, name="robot-settings"),
    path("app/", views.app_page, name="app"),
    # The CRM card (placements bound by crmcard): the tab, the send form, and their actions.
    path("card/tab/", card_tab.card_tab, name="card-tab"),
    path("card/item/", card_tab.card_item, name="card-item"),
    path("card/item/<uuid:public_id>/remind/", card_tab.card_remind, name="card-remind"),
    path("card/item/<uuid:public_id>/cancel/", card_tab.card_cancel, name="card-cancel"),
    path("card/item/<uuid:public_id>/resend/", card_tab.card_resend, name="card-resend"),
    path("card/item/<uuid:public_id>/replace/", card_tab.card_replace, name="card-replace"),
    path("card/item/<uuid:public_id>/signed.pdf", card_tab.card_signed, name="card-signed"),
    path("card/item/<uuid:public_id>/audit", card_tab.card_audit, name="card-audit"),
    path("card/send/", card_send.card_send, name="card-send"),
    path("card/send/form/", card_send.card_send_form, name="card-send-form"),
    path("app/requests/", views.dashboard, name="app-dashboard"),
    path("app/requests/<uuid:public_id>/", views.request_detail, name="app-request"),
    path("app/requests/<uuid:public_id>/remind/", views.request_remind, name="app-request-remind"),
    path("app/requests/<uuid:public_id>/cancel/", views.request_cancel, name="app-request-cancel"),
    path("app/requests/<uuid:public_id>/links/", views.request_links, name="app-request-links"),
    path("app/requests/<uuid:public_id>/signed.pdf", views.request_signed, name="app-request-signed"),
    path("app/settings/", settings_views.settings_page, name="app-settings"),
    path("app/settings/providers/<str:code>/connect/", settings_views.provider_connect, name="app-provider-connect"),
    path("app/settings/providers/<str:code>/test/", settings_views.provider_test, name="app-provider-test"),
    path("app/settings/providers/<str:code>/disconnect/", settings_views.provider_disconnect,
         name="app-provider-disconnect"),
    path("app/settings/default-provider/", settings_views.provider_default, name="app-provider-default"),
    path("app/settings/kedo/", settings_views.kedo_enable, name="app-kedo"),
    path("app/settings/defaults/", settings_views.defaults_save, name="app-defaults"),
    path("app/settings/robots/", settings_views.robots_sync, name="app-robots-sync"),
    path("app/settings/crm/", card_settings.card_settings, name="app-card-settings"),
    path("app/settings/crm/bind/", card_settings.card_bind_again, name="app-card-bind"),
    path("app/settings/crm/fields/", card_settings.card_fields_save, name="app-card-fields"),
    path("app/settings/crm/remove/", card_settings.card_remove, name="app-card-remove"),
]
