"""The send robot's "Notify this user": the named user hears the outcome, the item's responsible does not."""
import pytest

from bizproc_ext.robots import catalogue
from signing.models import SignatureRequest
from signing.tasks import refresh_request_status
from tests.conftest import ADMIN_ID, MANAGER_ID
from tests.robots.helpers import SEND_PROPS, deal_doc, run_worker

NAMED = 7  # a colleague of the manager, named in the robot's settings


@pytest.fixture
def colleague(portal_a):
    portal_a.emu.add_user(NAMED, "kim@alpha.test", name="Kim", last_name="Colleague")
    return NAMED


def _finish(memory_provider, req, capture, *emails, decline=False):
    for email in emails:
        (memory_provider.decline if decline else memory_provider.sign)(req.external_id, email)
        with capture(execute=True):
            refresh_request_status.apply(args=[req.pk, "webhook"])


@pytest.mark.django_db
def test_the_user_the_robot_names_gets_the_one_notification_and_the_responsible_none(
        eager_tasks, portal_a, memory_account, memory_provider, deal, colleague, django_capture_on_commit_callbacks):
    emu = portal_a.emu
    emu.crm.get(2, deal)["assignedById"] = MANAGER_ID
    wf = emu.start_robot("b24sign_send", document_id=deal_doc(deal),
                         properties={**SEND_PROPS, "wait": "Y", "notify_user": f"user_{NAMED}"})
    run_worker()
    req = SignatureRequest.objects.get()
    assert req.options["notify_user_id"] == NAMED
    [card] = emu.activities.values()
    assert card["fields"]["responsibleId"] == MANAGER_ID  # the timeline card still belongs to the responsible
    _finish(memory_provider, req, django_capture_on_commit_callbacks, "anna@customer.test")
    req.refresh_from_db()
    assert req.status == "completed" and wf.return_values["status"] == "completed"
    assert emu.notify_sends == 1
    [note] = emu.notifications
    assert note["user_id"] == NAMED and "was signed" in note["message"]
    assert not [n for n in emu.notifications if n["user_id"] in (MANAGER_ID, ADMIN_ID)]


@pytest.mark.django_db
def test_a_declined_request_tells_the_named_user_once(eager_tasks, portal_a, memory_account, memory_provider, deal,
                                                     colleague, django_capture_on_commit_callbacks):
    emu = portal_a.emu
    emu.start_robot("b24sign_send", document_id=deal_doc(deal),
                    properties={**SEND_PROPS, "wait": "Y", "notify_user": str(NAMED)})  # a bare id is a user too
    run_worker()
    req = SignatureRequest.objects.get()
    _finish(memory_provider, req, django_capture_on_commit_callbacks, "anna@customer.test", decline=True)
    _finish(memory_provider, req, django_capture_on_commit_callbacks)  # a late webhook: nothing new
    with django_capture_on_commit_callbacks(execute=True):
        refresh_request_status.apply(args=[req.pk, "webhook"])
    assert emu.notify_sends == 1 and emu.notifications[0]["user_id"] == NAMED
    assert "was declined" in emu.notifications[0]["message"]


@pytest.mark.django_db
@pytest.mark.parametrize("value, message", [
    ("group_12", "groups are not supported"),
    ("Kim", "'Kim' is not a valid user"),
    ("user_404", "the user to notify, user_404, cannot be read"),
])
def test_a_malformed_or_unknown_user_to_notify_is_an_input_error_and_nothing_is_sent(
        eager_tasks, portal_a, memory_account, memory_provider, deal, value, message):
    wf = portal_a.emu.start_robot("b24sign_send", document_id=deal_doc(deal),
                                  properties={**SEND_PROPS, "notify_user": value})
    run_worker()
    assert wf.return_values["status"] == "error" and message in wf.return_values["error"]
    assert memory_provider.sends == 0 and not SignatureRequest.objects.exists()


@pytest.mark.django_db
def test_notify_user_is_registered_as_a_user_property_by_the_robot_sync(portal_a):
    # The install registered the catalogue (bizproc.robot.add); the property is what the robot designer shows.
    for code in ("b24sign_send", "b24sign_kedo_send"):
        prop = portal_a.emu.robots[code]["PROPERTIES"]["notify_user"]
        assert prop["TYPE"] == "user" and prop["REQUIRED"] == "N" and prop["MULTIPLE"] == "N"
        assert prop["NAME"]["ru"] == "Уведомить этого пользователя"


def test_every_property_type_is_one_bitrix24_documents():
    # The core checks only a property's key and NAME at registration (RestService::validateActivityProperties);
    # an unknown Type would be accepted there and shown as who knows what in the designer: we check it here.
    documented = {"bool", "date", "datetime", "double", "int", "select", "string", "text", "user"}
    for robot in catalogue().values():
        for props in (robot.properties, robot.return_properties):
            assert {p.type for p in props.values()} <= documented, robot.code
