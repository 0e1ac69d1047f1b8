"""Former home of the data contract; it now lives in :mod:`causal_router.validation` (one catalogue
of checks for the CLI, the loaders and the Great Expectations suite). Kept so imports keep working."""

from ..validation.catalogue import DataValidationError, Problem
from ..validation.contract import check_logs, check_table, split_logs, split_valid, validate_logs, validate_table

__all__ = ["Problem", "DataValidationError", "check_logs", "check_table", "validate_logs", "validate_table",
           "split_logs", "split_valid"]
