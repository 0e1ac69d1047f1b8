"""Calling the chosen model (the gateway's upstream call).

Two ways, per deployment of the gateway file (``serve.gateway_client``):

- **direct** (the default, where it applies): an OpenAI-compatible deployment, ``litellm_params``
  with ``model: openai/NAME``, an ``http(s)`` ``api_base`` and nothing else but the key, the prices and
  the timeout, is called over one pooled HTTP client (aiohttp): the client's body with ``model`` =
  ``NAME`` goes to ``{api_base}/chat/completions`` and the upstream's JSON comes back as it was sent.
  LiteLLM's SDK adds ~7 ms of CPU a call on 2 cores for the same request, and httpx ~0.5 ms more than
  aiohttp (benchmarks/results/gateway_overhead), more than the router itself.
- **litellm**: every other deployment (another provider, extra call parameters), and every one with
  ``serve.gateway_client: litellm``, goes through ``litellm.acompletion``.

Both retry a failed call ``router_settings.num_retries`` times (the direct one on a connection error,
408, 409, 429 and 5xx, as OpenAI's client does) and raise an exception with ``status_code`` (the
upstream's HTTP status, where it sent one); a timeout's name contains ``Timeout``. Both return the
answer as a dict (OpenAI's chat-completion object), or for a stream an async iterator of chunk dicts.
"""

from __future__ import annotations

import json
import os

__all__ = ["DIRECT_KEYS", "Upstreams", "UpstreamError", "direct_eligible", "litellm_module"]

#: ``litellm_params`` keys a deployment may have and still be called directly.
DIRECT_KEYS = frozenset({"model", "api_base", "api_key", "input_cost_per_token", "output_cost_per_token", "timeout"})
_RETRIED = frozenset({408, 409, 429})
#: OpenAI's names for an upstream's HTTP errors (the rest: ``APIStatusError``, 5xx ``InternalServerError``).
_NAMES = {400: "BadRequestError", 401: "AuthenticationError", 403: "PermissionDeniedError", 404: "NotFoundError",
          409: "ConflictError", 422: "UnprocessableEntityError", 429: "RateLimitError"}


def litellm_module():
    """LiteLLM, imported with the local cost map (it never fetches one)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    return litellm


def direct_eligible(params: dict) -> bool:
    """Whether a deployment's ``litellm_params`` can be called directly (an OpenAI-compatible server)."""
    base = params.get("api_base")
    return (set(params) <= DIRECT_KEYS and str(params.get("model", "")).startswith("openai/")
            and isinstance(base, str) and base.startswith(("http://", "https://")))


class UpstreamError(Exception):
    """A direct call's failure: ``status_code`` is the upstream's HTTP status (None: no answer)."""

    def __init__(self, name: str, status_code: int | None = None, detail: str = ""):
        super().__init__(detail or name)
        self.name, self.status_code = name, status_code


class Upstreams:
    """The gateway's calls: ``await upstreams.call(params, body, key, num_retries)``.

    Parameters
    ----------
    mode : {"direct", "litellm"}
        ``direct``: deployments that :func:`direct_eligible` allows go over one pooled HTTP client.
    """

    def __init__(self, mode: str = "direct"):
        self.mode, self._client, self._litellm = mode, None, None

    def direct(self, params: dict) -> bool:
        return self.mode == "direct" and direct_eligible(params)

    async def call(self, params: dict, body: dict, key: str | None, num_retries: int):
        """The answer of one deployment (``params``: its ``litellm_params``, ``api_key`` not resolved) to
        the client's ``body`` (without ``model``): a dict, or an async iterator of dicts when streamed."""
        if not self.direct(params):
            if self._litellm is None:
                self._litellm = litellm_module()
            p = {k: v for k, v in params.items() if k != "api_key"}
            if key is not None:
                p["api_key"] = key
            resp = await self._litellm.acompletion(**body, **p, num_retries=num_retries)
            return _dicts(resp) if body.get("stream") else resp.model_dump(exclude_none=True)
        return await self._direct(params, body, key, num_retries)

    async def _direct(self, params, body, key, num_retries):
        import aiohttp

        if self._client is None:  # made in the serving loop, kept for its connections
            self._client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), raise_for_status=False)
        url = params["api_base"].rstrip("/") + "/chat/completions"
        headers = {"authorization": f"Bearer {key}"} if key else {}
        payload = {**body, "model": params["model"][len("openai/"):]}
        t = float(params.get("timeout") or 60.0)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=t, sock_read=t)  # per read, as OpenAI's client
        for attempt in range(num_retries + 1):
            last = attempt == num_retries
            try:
                resp = await self._client.post(url, json=payload, headers=headers, timeout=timeout)
            except (TimeoutError, aiohttp.ClientError) as exc:
                if last:
                    raise _failure(exc) from None
                continue
            if resp.status >= 400:
                resp.release()
                code = resp.status
                if last or not (code in _RETRIED or code >= 500):
                    name = _NAMES.get(code) or ("InternalServerError" if code >= 500 else "APIStatusError")
                    raise UpstreamError(name, code)
                continue
            if body.get("stream"):
                return _events(resp)
            try:
                return json.loads(await resp.read())
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                raise _failure(exc) from None
            finally:
                resp.release()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _failure(exc: BaseException) -> UpstreamError:
    if isinstance(exc, TimeoutError):  # aiohttp's read and connect timeouts are TimeoutErrors
        return UpstreamError("Timeout", None, type(exc).__name__)
    return UpstreamError("APIConnectionError", None, type(exc).__name__)


async def _dicts(stream):
    async for chunk in stream:
        yield chunk.model_dump(exclude_none=True)


async def _events(resp):
    """An OpenAI stream's chunks (server-sent events ``data: {...}``, until ``data: [DONE]``)."""
    import aiohttp

    try:
        async for raw in resp.content:
            line = raw.decode("utf-8").strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            yield json.loads(data)
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise _failure(exc) from None
    finally:
        resp.release()
