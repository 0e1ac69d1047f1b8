"""Where the pipeline's artifacts live: one object for the CLI stages, ``dvc.yaml`` and the flows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: The observational log splits the pipeline validates (the full-feedback test table is not a log).
LOG_SPLITS = ("train", "val", "holdout")


@dataclass(frozen=True)
class ArtifactLayout:
    """Paths of every artifact under one root (params.yaml's ``artifacts``); dvc.yaml names the same.

    Attributes
    ----------
    root : Path
    """

    root: Path

    @classmethod
    def from_params(cls, p: dict, base=".") -> ArtifactLayout:
        return cls(Path(base) / p["artifacts"])

    @property
    def lock(self) -> Path:
        """Held by a train flow while it writes here (not a DVC output)."""
        return self.root / ".train.lock"

    # validate
    @property
    def validation(self) -> Path:
        return self.root / "validation"

    def valid(self, split: str) -> Path:
        """The rows of a log split that passed validation."""
        return self.validation / split / "valid.parquet"

    def quarantine(self, split: str) -> Path:
        return self.validation / split / "quarantine.parquet"

    def validation_report(self, split: str) -> Path:
        return self.validation / split / "report.json"

    # embed
    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings"

    def embedding(self, name: str) -> Path:
        """(n, d) float32 embeddings of a file's distinct prompts; ``ids`` gives their prompt_ids."""
        return self.embeddings / f"{name}.npy"

    def embedding_ids(self, name: str) -> Path:
        return self.embeddings / f"{name}.ids.json"

    @property
    def encoder_info(self) -> Path:
        return self.embeddings / "encoder.json"

    # crossfit
    @property
    def crossfit(self) -> Path:
        return self.root / "crossfit"

    @property
    def routing_data(self) -> Path:
        return self.crossfit / "routing_data.joblib"

    @property
    def crossfit_meta(self) -> Path:
        return self.crossfit / "meta.json"

    @property
    def crossfit_timings(self) -> Path:
        """Wall times (not a DVC output: .dvcignore leaves ``timings.json`` out)."""
        return self.crossfit / "timings.json"

    @property
    def clip_report(self) -> Path:
        return self.crossfit / "clip_report.json"

    # train
    @property
    def routers(self) -> Path:
        return self.root / "routers"

    # evaluate
    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def utility_plot(self) -> Path:
        return self.plots / "utility.png"

    @property
    def frontier_plot(self) -> Path:
        return self.plots / "frontier.png"
