"""The connectors the settings enable, each with its own re-check window from the settings."""

from __future__ import annotations

import pytest

from listener.registry import build_connectors
from service.settings import load_settings

CREDENTIALS = {
    "x": {"x_bearer_token": "bearer", "x_user_id": "42", "x_stream_rules": ["acme"]},
    "reddit": {"reddit_client_id": "id", "reddit_client_secret": "secret", "reddit_subreddits": ["acme"]},
    "discourse": {"discourse_url": "https://forum.example", "discourse_api_key": "key",
                  "discourse_api_username": "acme"},
}


@pytest.mark.parametrize("platform", sorted(CREDENTIALS))
def test_each_connector_re_reads_the_window_its_settings_name(platform):
    settings = load_settings(**CREDENTIALS[platform], **{f"{platform}_recheck_seconds": 61,
                                                         f"{platform}_recheck_hours": 7,
                                                         f"{platform}_recheck_max": 51})
    built = build_connectors(settings)
    assert built and {c.platform for c in built} == {platform}
    assert [(c.recheck_seconds, c.recheck_hours, c.recheck_size) for c in built] == [(61, 7, 51)] * len(built)


def test_a_platform_without_credentials_has_no_connector():
    assert build_connectors(load_settings()) == []
