"""Integrations with tools already in the request path: LiteLLM (:mod:`.litellm`), and a stub upstream."""
