"""What each provider can do beyond sending, and the clear error a workflow gets for the rest (issue 13)."""
import pytest

from signing.base import CAPABILITIES, ProviderError
from signing.registry import provider_class

NEW = ("templates", "text_tags", "signing_links", "document_group")


def test_signnow_offers_templates_text_tags_links_and_groups():
    assert set(NEW) <= provider_class("signnow").capabilities


@pytest.mark.parametrize("code, label", [("evia", "Evia Sign"), ("b24kedo", "Bitrix24 Sign")])
@pytest.mark.parametrize("capability", NEW)
def test_evia_and_kedo_refuse_with_a_readable_error(code, label, capability):
    impl = provider_class(code)(account=None)
    with pytest.raises(ProviderError) as err:
        impl.require(capability)
    assert err.value.permanent and err.value.code == "unsupported"
    assert str(err.value).startswith(label) and CAPABILITIES[capability] in str(err.value)
