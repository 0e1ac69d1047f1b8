"""The service tests' registry (a tiny router, champion -> 1) and settings, reused."""

from tests.serving.conftest import registry, registry_template, settings  # noqa: F401
