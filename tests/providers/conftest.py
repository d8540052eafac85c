"""Provider emulators whose callbacks reach the app's real webhook endpoint (through the test client)."""
import pytest

from tests.providers.flows import Courier, evia_emulator, signnow_emulator


@pytest.fixture
def courier(client):
    return Courier(client)


@pytest.fixture
def signnow(settings, courier):
    with signnow_emulator(settings, courier) as emu:
        yield emu


@pytest.fixture
def evia(settings, courier):
    with evia_emulator(settings, courier) as emu:
        yield emu
