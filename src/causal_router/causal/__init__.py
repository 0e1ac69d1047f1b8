"""Causal estimation: cross-fitted nuisances, DR/IPW/DM scores and off-policy evaluation."""
