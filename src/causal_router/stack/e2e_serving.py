"""The e2e's steps through the routing service of ``make up`` (``causal-router serve --gateway``):
the champion served and reloaded without a restart, routed requests (``/v1/route``) with feedback,
and chat completions through the gateway (``/v1/chat/completions``, the official ``openai`` client)
on the stack's stub upstream, whose log rows must carry the gateway's cost (the upstream's usage x
the gateway file's prices) and the propensity it returned in ``x-causal-router-propensity``."""

from __future__ import annotations

import math
import os
import time

from .stack import SERVE_URL_ENV
from .upstream import COMPLETION_TOKENS, GATEWAY_FILE, PROMPT_TOKENS, read_gateway_prices

INTERVAL_MODEL = "causal-router-interval"


class ServingSteps:
    """The service's steps of :class:`~.e2e.E2E` (which provides ``stack``, ``mlflow()`` and ``pg_rows()``);
    each takes the e2e's ``Step`` record ``s`` and fills its ``detail``."""

    n_requests = 40  # prompts routed through /v1/route
    n_chat = 24  # chat completions through the gateway (every sixth streamed)
    feedback_ids: list[str]
    served_before: str | None = None
    gateway_expect: dict

    def serve_url(self) -> str:
        return os.environ[SERVE_URL_ENV]

    def health(self) -> dict:
        import httpx

        r = httpx.get(f"{self.serve_url()}/healthz", timeout=10)
        r.raise_for_status()
        return r.json()

    def champion_version(self) -> str:
        return str(self.mlflow().get_model_version_by_alias(INTERVAL_MODEL, "champion").version)

    def service_serves_champion(self, s):
        if not self.stack.alive("serve"):
            if not self.stack.start_serve():
                return self._skip(s, (self.stack.run / "serve.skipped").read_text().strip())
            s.facts["started"] = True
        h = self.health()
        want = self.champion_version()
        if str(h["version"]) != want:
            raise AssertionError(f"/healthz serves {h['model']} v{h['version']}, champion is v{want}")
        self.served_before = want
        s.detail = (f"{'started on' if s.facts.get('started') else 'already serving'} {h['model']} v{h['version']} "
                    f"(= champion), lambda range {h['lam_range']}")

    def route_feedback(self, s):
        import httpx
        import pandas as pd

        if not self.stack.alive("serve"):
            return self._skip(s, "the routing service is not running")
        h = self.health()
        lo, hi = h["lam_range"]
        lam = (lo + hi) / 2
        table = pd.read_parquet(self.stack.root / "data" / "test.parquet")  # full feedback: every model's outcome
        prompts = table.drop_duplicates("prompt_id").sort_values("prompt_id").head(self.n_requests)
        r = httpx.post(f"{self.serve_url()}/v1/route", json={"prompts": prompts["prompt"].tolist(), "lam": lam},
                       timeout=120)
        r.raise_for_status()
        decisions = r.json()["decisions"]
        outcome = table.set_index(["prompt_id", "model"])
        sent = []
        for pid, d in zip(prompts["prompt_id"], decisions):
            if (pid, d["model"]) not in outcome.index:
                continue
            row = outcome.loc[(pid, d["model"])]
            fb = httpx.post(f"{self.serve_url()}/v1/feedback", json={
                "decision_id": d["decision_id"], "score": float(row["score"]), "cost": float(row["cost"])}, timeout=30)
            fb.raise_for_status()
            sent.append(d["decision_id"])
        self.feedback_ids = sent
        n_dec = self.pg_count("decisions", "SELECT count(*) FROM decisions WHERE decision_id = ANY(%s)",
                              [d["decision_id"] for d in decisions])
        n_fb = self.pg_count("decisions", "SELECT count(*) FROM feedback WHERE decision_id = ANY(%s)", sent)
        if n_dec != len(decisions) or n_fb != len(sent) or not sent:
            raise AssertionError(f"PostgreSQL decision log holds {n_dec}/{len(decisions)} decisions and "
                                 f"{n_fb}/{len(sent)} feedbacks")
        models = pd.Series([d["model"] for d in decisions]).value_counts().to_dict()
        s.detail = (f"{len(decisions)} prompts routed at lam={lam:g} ({models}), {len(sent)} feedbacks; all in the "
                    "PostgreSQL decision log")

    def ingest_check(self, s):
        if not self.feedback_ids:
            return self._skip(s, "no feedback was sent (the routing service is not running)")
        added = self.pg_count("decisions", "SELECT count(*) FROM ingested WHERE outcome = 'added' "
                              "AND decision_id = ANY(%s)", self.feedback_ids)
        if added != len(self.feedback_ids):
            raise AssertionError(f"{added}/{len(self.feedback_ids)} decisions with feedback ingested by the retrain")
        s.detail = f"the scheduled retrain ingested {added} decisions with feedback into the logs (ingested table)"

    def service_reload(self, s):
        if not self.stack.alive("serve") or self.served_before is None:
            return self._skip(s, "the routing service is not running")
        want = self.champion_version()
        deadline = time.monotonic() + 120
        version = None
        while time.monotonic() < deadline:
            version = str(self.health()["version"])
            if version == want:
                break
            time.sleep(2)
        if version != want:
            raise AssertionError(f"/healthz still serves v{version} 120 s after champion moved to v{want}")
        if want != self.served_before:
            s.detail = f"champion v{self.served_before} -> v{want}: the service reloaded it without a restart"
        else:
            s.detail = f"the gate kept champion v{want}; the service serves it; " + self.reload_on_test_alias(want)

    def reload_on_test_alias(self, champion: str) -> str:
        """A second service on ``@e2e-reload``: the alias moves from the champion to the retrain's
        challenger, and /healthz must follow within 120 s (the service polls the alias)."""
        import httpx

        c, alias = self.mlflow(), "e2e-reload"
        challenger = str(c.get_model_version_by_alias(INTERVAL_MODEL, "challenger").version)
        if challenger == champion:
            return "no newer version to reload to"
        c.set_registered_model_alias(INTERVAL_MODEL, alias, champion)
        try:
            url = self.stack.spawn_serve("serve-reload-check", f"models:/{INTERVAL_MODEL}@{alias}")
            start = str(httpx.get(f"{url}/healthz", timeout=10).json()["version"])
            c.set_registered_model_alias(INTERVAL_MODEL, alias, challenger)
            t0, version = time.monotonic(), start
            while time.monotonic() - t0 < 120 and version != challenger:
                time.sleep(2)
                version = str(httpx.get(f"{url}/healthz", timeout=10).json()["version"])
            if version != challenger:
                raise AssertionError(f"a service on @{alias} still serves v{version} 120 s after the alias moved "
                                     f"to v{challenger}")
            return (f"a second service on @{alias} reloaded v{start} -> v{challenger} "
                    f"{time.monotonic() - t0:.0f} s after the alias moved, without a restart")
        finally:
            self.stack.stop("serve-reload-check")
            c.delete_registered_model_alias(INTERVAL_MODEL, alias)

    # ---- the gateway -------------------------------------------------------------------------
    def gateway_chat(self, s):
        """Chat completions through the gateway with the official openai client (a bounded few, some
        streamed), then feedback ``{decision_id, score}`` only: the gateway recorded each call's cost."""
        import httpx
        import openai
        import pandas as pd

        from ..settings.params import load_settings

        self.gateway_expect = {}
        if not self.stack.alive("serve"):
            return self._skip(s, "the routing service is not running")
        prices = read_gateway_prices(self.stack.dir / GATEWAY_FILE)
        name = load_settings(self.stack.root / "params.yaml").serve.gateway_model
        lo, hi = self.health()["lam_range"]
        lam = (lo + hi) / 2
        table = pd.read_parquet(self.stack.root / "data" / "test.parquet")
        prompts = table.drop_duplicates("prompt_id").sort_values("prompt_id")  # others than /v1/route's
        prompts = prompts.iloc[self.n_requests:self.n_requests + self.n_chat]
        scores = table.drop_duplicates(["prompt_id", "model"]).set_index(["prompt_id", "model"])["score"]
        client = openai.OpenAI(base_url=f"{self.serve_url()}/v1", api_key="unused", max_retries=0, timeout=120)
        streamed = 0
        for i, (pid, prompt) in enumerate(zip(prompts["prompt_id"], prompts["prompt"])):
            ask = {"model": name, "messages": [{"role": "user", "content": prompt}],
                   "extra_body": {"causal_router": {"lam": lam}}}
            if i % 6 == 5:
                with client.chat.completions.with_streaming_response.create(
                        stream=True, stream_options={"include_usage": True}, **ask) as resp:
                    headers, chunks = resp.headers, list(resp.parse())
                text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                usage, answered = next(c.usage for c in chunks if c.usage), {c.model for c in chunks}
                streamed += 1
            else:
                raw = client.chat.completions.with_raw_response.create(**ask)
                headers, comp = raw.headers, raw.parse()
                text, usage, answered = comp.choices[0].message.content, comp.usage, {comp.model}
            model, did = headers["x-causal-router-model"], headers["x-causal-router-decision-id"]
            if answered != {model} or not text or model not in prices:
                raise AssertionError(f"decision {did}: header model {model!r}, answered by {answered}, text {text!r}")
            if (usage.prompt_tokens, usage.completion_tokens) != (PROMPT_TOKENS, COMPLETION_TOKENS):
                raise AssertionError(f"decision {did}: usage {usage} is not the stub upstream's")
            self.gateway_expect[did] = {
                "model": model, "propensity": float(headers["x-causal-router-propensity"]),
                "cost": usage.prompt_tokens * prices[model][0] + usage.completion_tokens * prices[model][1]}
            fb = httpx.post(f"{self.serve_url()}/v1/feedback", timeout=30, json={
                "decision_id": did, "score": float(scores.get((pid, model), 1.0))})
            fb.raise_for_status()
        ids = list(self.gateway_expect)
        recorded = dict(self.pg_rows("decisions", "SELECT decision_id, cost FROM outcomes WHERE status = 'ok' "
                                     "AND decision_id = ANY(%s)", ids))
        fed = self.pg_count("decisions", "SELECT count(*) FROM feedback WHERE decision_id = ANY(%s)", ids)
        off = [d for d, e in self.gateway_expect.items() if not _close(recorded.get(d), e["cost"])]
        if off or fed != len(ids):
            raise AssertionError(f"decision log: {len(recorded)}/{len(ids)} outcomes, {fed} feedbacks; cost differs "
                                 f"from usage x the file's prices for {off[:3]}")
        models = pd.Series([e["model"] for e in self.gateway_expect.values()]).value_counts().to_dict()
        s.detail = (f"{len(ids)} chat completions through the gateway ({streamed} streamed) at lam={lam:g} "
                    f"({models}), answered by the stub upstream; outcomes (cost = usage x file prices) and "
                    f"{fed} score-only feedbacks in the decision log")

    def gateway_logs(self, s):
        """The retrain's ingest put every gateway decision with feedback into the logs with the
        gateway's cost and the propensity it returned."""
        import pandas as pd

        if not self.gateway_expect:
            return self._skip(s, "no chat completion went through the gateway")
        data = self.stack.root / "data"
        parts = {f: pd.read_parquet(data / f) for f in ("train.parquet", "holdout.parquet") if (data / f).exists()}
        where = {f: int(df["prompt_id"].isin(list(self.gateway_expect)).sum()) for f, df in parts.items()}
        logs = pd.concat(parts.values()).drop_duplicates("prompt_id", keep="last").set_index("prompt_id")
        missing = [d for d in self.gateway_expect if d not in logs.index]
        if missing:
            raise AssertionError(f"{len(missing)}/{len(self.gateway_expect)} gateway decisions missing from "
                                 f"data/train.parquet + holdout.parquet (e.g. {missing[0]})")
        bad = [(d, logs.loc[d, ["model", "cost", "propensity"]].tolist(), e) for d, e in self.gateway_expect.items()
               if logs.loc[d, "model"] != e["model"] or not _close(logs.loc[d, "cost"], e["cost"])
               or not _close(logs.loc[d, "propensity"], e["propensity"])]
        if bad:
            raise AssertionError(f"{len(bad)} log rows differ from the gateway (row [model, cost, propensity] vs "
                                 f"expected): {bad[:2]}")
        d, e = next(iter(self.gateway_expect.items()))
        s.detail = (f"{len(self.gateway_expect)} gateway decisions in the new logs ({where}): cost = usage x the "
                    f"file's prices (e.g. {e['model']}: {e['cost']:.3g} USD), propensity = the header's "
                    f"(e.g. {e['propensity']:.4g})")

    @staticmethod
    def _skip(s, reason: str) -> str:
        s.detail = reason
        return "SKIPPED"


def _close(a, b) -> bool:
    return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-15)
