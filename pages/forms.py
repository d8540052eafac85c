"""Forms of the app pages: provider credentials (built from each provider's credential_fields),
the portal's defaults, Bitrix24 Sign (KEDO) and the dashboard filters."""
from __future__ import annotations

from django import forms
from django.utils.translation import gettext, gettext_noop
from django.utils.translation import gettext_lazy as _

from signing import states
from signing.base import mask_secret
from signing.models import PortalSettings

# Providers declare their field labels in English; these marks put them in the catalogue for gettext().
_PROVIDER_TEXTS = [
    gettext_noop("Basic authorization token"), gettext_noop("signNow login email"), gettext_noop("signNow password"),
    gettext_noop("API dashboard → your app → Basic Authorization token"),
    gettext_noop("Invites are sent from this address; it must own the documents"),
    gettext_noop("Application ID (client_id)"), gettext_noop("Application key (client_secret)"),
    gettext_noop("Authorization code"), gettext_noop("From Evia's authorize page; exchanged once for tokens."),
    gettext_noop("Refresh token"), gettext_noop("Instead of a code, an existing refresh token."),
    gettext_noop("Company (CRM my company ID)"), gettext_noop("Signing provider"),
    gettext_noop("Pick from the providers Bitrix24 Sign lists for the company."),
]


def mask(value) -> str:
    return mask_secret(value, bullet="••••••••")


class CredentialsForm(forms.Form):
    """One field per ``CredentialField``.  A secret left blank keeps the stored one (it is never sent back)."""

    def __init__(self, provider_cls, existing: dict | None = None, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.existing = dict(existing or {})
        self.provider_cls = provider_cls
        for f in provider_cls.credential_fields:
            stored = self.existing.get(f.name)
            if f.secret:
                widget = forms.PasswordInput(render_value=False, attrs={
                    "placeholder": mask(stored) or "", "autocomplete": "new-password"})
            else:
                widget = forms.TextInput(attrs={"autocomplete": "off"})
            self.fields[f.name] = forms.CharField(
                label=gettext(f.label), help_text=gettext(f.help) if f.help else "", widget=widget,
                required=f.required and not (f.secret and stored), strip=True, max_length=4000,
                initial=None if f.secret else stored)

    def credentials(self) -> dict:
        out = {}
        for f in self.provider_cls.credential_fields:
            value = self.cleaned_data.get(f.name) or ""
            if not value and f.secret and self.existing.get(f.name):
                value = self.existing[f.name]
            if value:
                out[f.name] = value
        return out


class DefaultsForm(forms.ModelForm):
    expiry_days = forms.IntegerField(label=_("Documents expire after (days)"), min_value=1, max_value=365)
    reminder_days = forms.IntegerField(label=_("Remind signers every (days, 0 = never)"), min_value=0, max_value=30)

    class Meta:
        model = PortalSettings
        # No reply-to: none of the providers' APIs (signNow invite, Evia signatories, sign.b2e) has a
        # reply-to field, so a setting for it would be saved and never used (docs/decisions.md).
        fields = ["sender_name", "expiry_days", "reminder_days", "attach_signed_copy"]
        labels = {"sender_name": _("Sender name"),
                  "attach_signed_copy": _("Attach the signed PDF to the CRM item's timeline")}
        help_texts = {"sender_name": _("Shown to signers as the sender."), "attach_signed_copy": ""}


class KedoForm(forms.Form):
    company_id = forms.IntegerField(label=_("Company (CRM “my company” ID)"), min_value=1, required=False)
    provider_uid = forms.CharField(label=_("Signing provider"), required=False, max_length=64)


def status_choices():
    labels = {states.DRAFT: _("Draft"), states.SENT: _("Sent"), states.PARTIALLY_SIGNED: _("Partially signed"),
              states.COMPLETED: _("Completed"), states.DECLINED: _("Declined"), states.EXPIRED: _("Expired"),
              states.CANCELLED: _("Cancelled"), states.ERROR: _("Error")}
    return [(code, labels.get(code, label)) for code, label in states.CHOICES]


class FilterForm(forms.Form):
    status = forms.ChoiceField(label=_("Status"), required=False)
    provider = forms.ChoiceField(label=_("Provider"), required=False)
    date_from = forms.DateField(label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label=_("To"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    email = forms.CharField(label=_("Signer email"), required=False, max_length=254,
                            widget=forms.TextInput(attrs={"type": "search", "placeholder": "anna@example.com"}))

    def __init__(self, *args, providers=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["status"].choices = [("", _("Any status"))] + status_choices()
        self.fields["provider"].choices = [("", _("Any provider"))] + list(providers)
