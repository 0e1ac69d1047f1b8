"""Settings to stage arguments, once: what each pipeline stage is called with.

``causal-router stage NAME`` (what ``dvc repro`` runs, from the project folder) and the train flow
(:mod:`causal_router.pipeline.tasks`, any root) both build their stage calls here, so that they
cannot drift apart. Paths are the params file's, under ``root``: relative for ``root="."`` (the
stage commands), absolute for a resolved root (the flows).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..settings.params import Settings, load_settings
from .layout import LOG_SPLITS, ArtifactLayout

__all__ = ["StagePlan"]


@dataclass(frozen=True)
class StagePlan:
    """The stages' arguments for ``settings`` in the project folder ``root``.

    Attributes
    ----------
    settings : Settings
    root : Path
    """

    settings: Settings
    root: Path = Path(".")

    @classmethod
    def load(cls, params_path: str | Path = "params.yaml", root: str | Path = ".",
             resolve: bool = False) -> StagePlan:
        """The plan of the params file ``root/params_path`` (missing or invalid: an error, see
        :func:`~causal_router.settings.params.load_settings`); ``resolve``: absolute paths."""
        base = Path(root).resolve() if resolve else Path(root)
        return cls(load_settings(base / params_path), base)

    @property
    def layout(self) -> ArtifactLayout:
        return ArtifactLayout(self.root / self.settings.artifacts)

    def path(self, rel: str | None) -> str | None:
        """``rel`` (a path of the params file) under the project folder; None stays None."""
        return None if rel is None else str(self.root / rel)

    @property
    def data(self) -> dict[str, str | None]:
        """params.yaml's ``data`` paths under the project folder."""
        return {k: self.path(v) for k, v in self.settings.data.model_dump().items()}

    @property
    def prices(self) -> str | None:
        return self.path(self.settings.crossfit.prices)

    def logs(self, existing: bool = False) -> dict[str, str]:
        """The observational log splits ({split: path}); ``existing``: only those present."""
        d = self.data
        return {s: d[s] for s in LOG_SPLITS if not existing or Path(d[s]).exists()}

    def validate_args(self, existing: bool = False) -> dict:
        """Keyword arguments of :func:`~causal_router.pipeline.stages.validate_stage`."""
        v = self.settings.validation
        eval_set = self.data["eval_set"]
        if existing and eval_set is not None and not Path(eval_set).is_file():
            eval_set = None
        return {"inputs": self.logs(existing), "out_dir": str(self.layout.validation), "models": v.models,
                "positivity_floor": v.positivity_floor, "warn": list(v.warn), "prices": self.prices,
                "eval_set": eval_set}

    def embed_inputs(self, valid: dict | None = None) -> dict[str, str]:
        """What the embed stage embeds: the validated logs (``valid``, the validate stage's result, else
        every split's validated file) and the full-feedback test table (``valid`` given: only when present)."""
        art = self.layout
        if valid is None:
            inputs = {s: str(art.valid(s)) for s in (*LOG_SPLITS, "eval_set")}
            return {**inputs, "test": self.data["test"]}
        test = self.data["test"]
        return {**valid, **({"test": test} if Path(test).exists() else {})}

    def embed_config(self, cache_dir: str | Path | None = None) -> dict:
        """Keyword arguments of :func:`~causal_router.pipeline.stages.embed_stage` besides the inputs and
        the output folder (``cache_dir`` overrides params.yaml's)."""
        cfg = self.settings.embed.model_dump()
        cfg["cache_dir"] = str(cache_dir) if cache_dir is not None else self.path(cfg["cache_dir"])
        return cfg

    def crossfit_config(self) -> dict:
        """Keyword arguments of :func:`~causal_router.pipeline.stages.crossfit_stage` besides the layout."""
        return {**self.settings.crossfit.model_dump(), "prices": self.prices}

    @property
    def lambdas(self) -> list[float]:
        return [float(x) for x in self.settings.train.lambdas]

    @property
    def methods(self) -> list[str]:
        """The routers to train (every default router when params.yaml names none); unknown: KeyError."""
        from ..policy.training import check_methods

        return check_methods(self.settings.train.methods)

    @property
    def evaluate_lambdas(self) -> list[float]:
        return [float(x) for x in self.settings.evaluate.lambdas]

    @property
    def test_table(self) -> str:
        return self.data["test"]
