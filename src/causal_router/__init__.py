"""causal-router: learn LLM routers from observational logs (Tsiourvas, Sun and Perakis, NeurIPS 2025)."""

__version__ = "0.1.0"
