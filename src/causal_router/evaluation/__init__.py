"""Evaluation on full-feedback tables: utility, regret, accuracy, cost, AIQ and plots."""
