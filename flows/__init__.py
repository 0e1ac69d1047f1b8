"""Prefect flows: thin calls into ``causal_router.pipeline``.

Importing this package sets the project's Prefect environment before Prefect is imported (its
settings are read once, at import): Prefect's home in ``<project>/.cache/prefect``, no analytics,
no log shipping to the temporary server (:func:`causal_router.settings.env.use_project_prefect`).
"""

from causal_router.settings.env import use_project_prefect

use_project_prefect()
