"""MLflow "models from code" entry point of the router pyfunc (see :mod:`causal_router.registry.pyfunc`).

MLflow copies this file into every logged router model and runs it on load; it only names the
model class, which comes from the installed ``causal-router`` package (no pickled objects).
"""

from mlflow.models import set_model

from causal_router.registry.pyfunc import RouterModel

set_model(RouterModel())
