"""The send robot's settings slider (issue 13): document templates of the item's type from
``crm.documentgenerator.template.list``, signer fields picked from ``document_fields``, and the
"open request" option."""
import pytest

from tests.emulators.bitrix24.docgen import add_template, delete_template

DEAL_FIELDS = {
    "UF_CRM_CONTRACT": {"Name": "Contract", "Type": "file"},
    "ASSIGNED_BY_ID": {"Name": "Responsible person", "Type": "user"},
    "UF_CRM_BUYER": {"Name": "Buyer", "Type": "UF:crm", "Options": {"CONTACT": "Y"}},
    "UF_CRM_PARTNER_CO": {"Name": "Partner company", "Type": "UF:crm", "Options": {"COMPANY": "Y"}},
    "UF_CRM_LAWYER_EMAIL": {"Name": "Lawyer's e-mail", "Type": "string"},
    "TITLE": {"Name": "Title", "Type": "string"},
}


def open_slider(portal, client, current=None, document_type=("crm", "CCrmDocumentDeal", "DEAL"), lang="en"):
    options = {"code": "b24sign_send", "activity_name": "A1_2_3_4", "document_type": list(document_type),
               "current_values": current or {}, "document_fields": DEAL_FIELDS}
    _, body = portal.emu.app_page_request(user_id=2, placement="BIZPROC_ACTIVITY_PROPERTIES_DIALOG", options=options)
    response = client.post(f"/bizproc/settings/b24sign_send/?LANG={lang}", body)
    assert response.status_code == 200
    return response.content.decode()


def control(html: str, key: str) -> str:
    return html.split(f'id="p-{key}"')[1].split("</div>")[0]


@pytest.mark.django_db
def test_the_slider_lists_the_templates_for_the_items_type(portal_a, memory_account, client):
    contract = add_template(portal_a.emu, "Sales contract", entity_type_ids=("2_category_0",))
    add_template(portal_a.emu, "Lead questionnaire", entity_type_ids=(1,))
    gone = add_template(portal_a.emu, "Old contract", entity_type_ids=(2,))
    delete_template(portal_a.emu, gone)
    html = open_slider(portal_a, client, current={"document_source": "template", "template_id": str(contract)})
    templates = control(html, "template_id")
    assert f'value="{contract}" selected' in templates and "Sales contract" in templates
    assert "Lead questionnaire" not in templates and "Old contract" not in templates
    assert 'value="template" selected' in control(html, "document_source")

    lead_html = open_slider(portal_a, client, document_type=("crm", "CCrmDocumentLead", "LEAD"))
    assert "Lead questionnaire" in control(lead_html, "template_id")
    assert "Sales contract" not in control(lead_html, "template_id")


@pytest.mark.django_db
def test_the_slider_offers_employee_contact_and_email_fields_as_signers(portal_a, memory_account, client):
    html = open_slider(portal_a, client, current={"signer_fields": ["user:ASSIGNED_BY_ID"]})
    fields = control(html, "signer_fields")
    assert 'value="user:ASSIGNED_BY_ID" checked' in fields
    assert 'value="contact:UF_CRM_BUYER"' in fields and 'value="email:UF_CRM_LAWYER_EMAIL"' in fields
    assert "UF_CRM_PARTNER_CO" not in fields and "TITLE" not in fields and "UF_CRM_CONTRACT" not in fields


@pytest.mark.django_db
def test_the_open_request_option_defaults_to_returning_it_in_russian_too(portal_a, memory_account, client):
    html = open_slider(portal_a, client, lang="ru")
    option = control(html, "if_open_exists")
    assert 'value="return" selected' in option and "Вернуть его, ничего не отправлять" in option
    assert "Отменить его и отправить заново" in option and "Шаблон документа" in html


@pytest.fixture
def signnow_account(portal_a, settings, client):
    from tests.providers.flows import SIGNNOW_LOGIN, Courier, connect, signnow_emulator

    with signnow_emulator(settings, Courier(client)) as emu:
        connect(portal_a, "signnow", *SIGNNOW_LOGIN, "--default")
        yield emu


@pytest.mark.django_db
def test_the_slider_lists_the_connected_signnow_templates_with_their_roles(portal_a, signnow_account, client):
    tid = signnow_account.add_template("Sales agreement", [
        {"type": "signature", "role": "Buyer", "name": "b"}, {"type": "signature", "role": "Seller", "name": "s"},
        {"type": "text", "role": "Seller", "name": "Price"}])
    html = open_slider(portal_a, client, current={"provider_template_id": tid})
    control_html = html.split('id="p-provider_template_id"')[1].split("</select>")[0]
    assert f'value="{tid}"' in control_html and "Sales agreement (signNow)" in control_html
    assert 'data-roles="Buyer, Seller"' in control_html and 'data-text-fields="Price"' in control_html
    parts = html.split('id="template-parts"')[1].split("</p>")[0]
    assert "Buyer, Seller" in parts and "Price" in parts
    assert 'placeholder="Buyer=primary_contact' in html  # the role mapping control


@pytest.mark.django_db
@pytest.mark.parametrize("lang, label", [("en", "Notify this user"), ("ru", "Уведомить этого пользователя")])
def test_the_slider_offers_notify_this_user_with_its_default_explained(portal_a, memory_account, client, lang, label):
    html = open_slider(portal_a, client, current={"notify_user": "user_7"}, lang=lang)
    assert label in html
    field = control(html, "notify_user")
    assert 'value="user_7"' in field and 'placeholder="user_1"' in field
    assert ("the item&#x27;s responsible" if lang == "en" else "ответственный за элемент") in field
