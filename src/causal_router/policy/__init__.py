"""Routers: networks, regret losses, endpoint and interval training, the router registry."""
