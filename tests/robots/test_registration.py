"""Registering the catalogue's robots on portal A: add, update, delete, and a list gone stale meanwhile."""
import pytest

from b24app.rest import B24Client
from bizproc_ext.registration import sync_robots
from bizproc_ext.robots import catalogue


def sync(portal_a):
    return sync_robots(portal_a.db, B24Client(portal_a.db))


@pytest.mark.django_db
def test_an_update_sends_the_placement_handler_at_the_top_level_too(portal_a):
    """Some core versions validate ``PLACEMENT_HANDLER`` outside ``FIELDS`` on update (the emulator does)."""
    actions = sync(portal_a)
    assert set(actions.values()) == {"updated"}  # installed at install time: this run updates them all
    with_placement = [c for c, r in catalogue().items() if r.use_placement]
    assert with_placement
    for code in with_placement:
        assert portal_a.emu.robots[code]["USE_PLACEMENT"] == "Y" and portal_a.emu.robots[code]["PLACEMENT_HANDLER"]


@pytest.mark.django_db
def test_codes_no_longer_in_the_catalogue_are_deleted(portal_a):
    portal_a.emu.robots["b24sign_old_robot"] = {**portal_a.emu.robots["b24sign_send"], "CODE": "b24sign_old_robot"}
    actions = sync(portal_a)
    assert actions["b24sign_old_robot"] == "deleted"
    assert set(portal_a.emu.robots) == set(catalogue())


@pytest.mark.django_db
def test_an_add_that_lost_a_race_becomes_an_update(portal_a):
    portal_a.emu.cloud.robot_add_race = True
    portal_a.emu.stale_robot_list = []  # our list ran before a concurrent sync added them all
    actions = sync(portal_a)
    assert set(actions.values()) == {"updated"}
    assert set(portal_a.emu.robots) == set(catalogue())


@pytest.mark.django_db
def test_an_update_of_a_robot_deleted_meanwhile_becomes_an_add(portal_a):
    portal_a.emu.stale_robot_list = list(portal_a.emu.robots)
    portal_a.emu.robots.pop("b24sign_cancel")  # deleted after our list
    actions = sync(portal_a)
    assert actions["b24sign_cancel"] == "added" and "b24sign_cancel" in portal_a.emu.robots
