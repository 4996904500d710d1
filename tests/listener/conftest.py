"""The console's app fixtures, for the connector page tests (``test_connectors_page``)."""

from tests.console.conftest import app_client, console_settings, runtime  # noqa: F401
