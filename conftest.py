"""Root conftest: every test folder gets the shared fixtures (a real Redis for the session)."""

pytest_plugins = ["dalal_shared.testing.pytest_plugin", "dalal_shared.testing.postgres"]
