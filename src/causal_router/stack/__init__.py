"""Running causal-router on servers: the one-machine stack (``stack``) and its end-to-end check (``e2e``)."""
