"""The HTTP request and response bodies of the routing service (OpenAPI schema): strict numbers (true
and false are not numbers), storable texts (NUL and lone surrogates refused on both log back-ends)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .store import text_problem


def _storable(text: str) -> str:
    why = text_problem(text)
    if why:
        raise ValueError(why)
    return text


Finite = Annotated[float, Field(allow_inf_nan=False, strict=True)]  # strict: true/false are not numbers
Text = Annotated[str, AfterValidator(_storable)]
# Only documents the scheme in /docs: GuardMiddleware checks the token before any parsing.


class RouteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompts: list[Annotated[Text, Field(min_length=1)]] = Field(
        ..., min_length=1, description="Prompts to route (each non-empty).")
    lam: Finite | None = Field(None, description="Cost preference lambda: utility = score - lam * cost. Must lie "
                               "in the served router's lambda interval (see /healthz). Required unless the service "
                               "holds a budget (serve.budget), whose controller then sets it; sent, it overrides "
                               "the controller for this request (see GET /v1/budget).")
    explore: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False, strict=True)] | None = Field(
        None, description="Exploration rate in [0, 1] (default: params.yaml serve.explore); 0 = deterministic.")


class Decision(BaseModel):
    decision_id: str
    model: str
    propensity: float = Field(..., description="Probability with which the policy drew this model.")
    router_version: str
    lam: float


class RouteResponse(BaseModel):
    decisions: list[Decision]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision_id: Annotated[Text, Field(min_length=1, max_length=64)]
    score: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False, strict=True)]
    cost: Annotated[float, Field(ge=0.0, allow_inf_nan=False, strict=True)] | None = Field(
        None, description="USD (at most serve.max_cost); when absent, computed from the price sheet and the "
                          "token counts.")
    output_tokens: Annotated[int, Field(ge=0, strict=True)] | None = Field(
        None, description="At most serve.max_tokens.")


class FeedbackResponse(BaseModel):
    decision_id: str
    score: float
    cost: float


class BudgetReport(BaseModel):
    """``GET /v1/budget``: the spend target and how it is held (:mod:`causal_router.serving.budget`)."""

    budget: float = Field(..., description="Target mean cost, USD per decision.")
    lam: float = Field(..., description="The controller's current lambda.")
    fill: float = Field(0.0, description="Share of the traffic the unspent budget moves to the models that reach "
                        "it, when the router underspends at the bottom of its interval (serve.budget_fill).")
    lam_range: list[float]
    lam0: float | None = Field(None, description="The cold start (the calibrated lambda).")
    decisions: int = Field(..., description="Decisions since the service started.")
    costed_decisions: int = Field(..., description="Those with a recorded cost (gateway outcome or feedback).")
    spend_since_start: float = Field(..., description="USD recorded since the service started.")
    spend_per_decision_since_start: float | None
    window: int = Field(..., description="Costed decisions in the controller's window.")
    spend_window: float
    spend_per_decision_window: float | None
    hard_cap_per_hour: float | None
    spend_last_hour: float
    capped: bool = Field(..., description="The hard cap is reached: every decision goes to the cheapest model.")
    started_at: str


class Health(BaseModel):
    status: str
    model: str
    version: str
    model_uri: str
    lam_range: list[float]
    models: list[str]
    encoder: str  # the features' key, e.g. "static:minilm-l6-v2:pca256:<hash>" or "all-MiniLM-L6-v2@<hash>|..."
