import pytest

from guard.hub import HubSettings
from guard.testing.fake_hub import FakeHub

TOKEN = "hf_fake_guard_token"


@pytest.fixture
def online(monkeypatch):
    """The suite runs with HF_HUB_OFFLINE=1 (tests/conftest.py); these tests talk to a loopback fake Hub."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def hub(online):
    with FakeHub() as fake:
        yield fake


@pytest.fixture
def settings(hub):
    return HubSettings(endpoint=hub.endpoint, token=TOKEN)
