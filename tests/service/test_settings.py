"""Settings: one typed object from SOCIALCARE_* variables and an optional TOML file."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import load_settings


def test_defaults_are_the_embedded_mode(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.bus == "inprocess" and s.port == 8080
    assert s.effective_database_url == f"sqlite+aiosqlite:///{tmp_path / 'var' / 'socialcare.db'}"
    assert not (s.x_enabled or s.reddit_enabled or s.discourse_enabled)


def test_environment_variables_and_lists(monkeypatch):
    monkeypatch.setenv("SOCIALCARE_BUS", "redis")
    monkeypatch.setenv("SOCIALCARE_REDDIT_SUBREDDITS", "acme, acmehelp")
    monkeypatch.setenv("SOCIALCARE_X_STREAM_RULES", '["@AcmeHelp", "acme down -is:retweet"]')
    monkeypatch.setenv("SOCIALCARE_X_BEARER_TOKEN", "t0ken")
    monkeypatch.setenv("SOCIALCARE_X_USER_ID", "99")
    s = load_settings()
    assert s.bus == "redis"
    assert s.reddit_subreddits == ["acme", "acmehelp"]
    assert s.x_stream_rules == ["@AcmeHelp", "acme down -is:retweet"]
    assert s.x_enabled and s.secret("x_bearer_token") == "t0ken"
    assert "t0ken" not in repr(s)  # secrets never print


def test_toml_file_is_read_and_the_environment_wins(monkeypatch, tmp_path):
    cfg = tmp_path / "socialcare.toml"
    cfg.write_text('port = 9090\nbus = "redis"\nreddit_keywords = ["acme"]\n')
    monkeypatch.setenv("SOCIALCARE_PORT", "9191")
    s = load_settings(cfg)
    assert s.port == 9191 and s.bus == "redis" and s.reddit_keywords == ["acme"]


def test_secrets_in_the_toml_file_are_refused(tmp_path):
    cfg = tmp_path / "socialcare.toml"
    cfg.write_text('x_bearer_token = "leaked"\n')
    with pytest.raises(ValueError, match="secrets may only come from the environment"):
        load_settings(cfg)


def test_invalid_values_are_clear_errors(monkeypatch):
    monkeypatch.setenv("SOCIALCARE_BUS", "kafka")
    with pytest.raises(ValidationError, match="bus"):
        load_settings()


def test_a_missing_settings_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_settings(Path(tmp_path / "nope.toml"))


def test_incident_thresholds_are_settings_passed_to_the_detector(monkeypatch):
    from datetime import timedelta

    from community.incidents import SpikePolicy

    assert SpikePolicy.from_settings(load_settings()) == SpikePolicy()  # the defaults did not move
    monkeypatch.setenv("SOCIALCARE_INCIDENT_REPORT_CONFIDENCE", "0.5")
    monkeypatch.setenv("SOCIALCARE_INCIDENT_QUIET_MINUTES", "15")
    monkeypatch.setenv("SOCIALCARE_INCIDENT_FACTOR", "3")
    policy = SpikePolicy.from_settings(load_settings())
    assert (policy.report_confidence, policy.quiet_after, policy.factor) == (0.5, timedelta(minutes=15), 3.0)
    monkeypatch.setenv("SOCIALCARE_INCIDENT_REPORT_CONFIDENCE", "1.5")
    with pytest.raises(ValidationError, match="incident_report_confidence"):
        load_settings()


def test_the_readme_documents_every_setting():
    """The configuration table names each setting by its full variable (a new setting needs a row)."""
    from service.settings import Settings

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    missing = [name for name in Settings.model_fields if f"`SOCIALCARE_{name.upper()}`" not in readme]
    assert missing == []
