"""The deployment loop, simulated on a full-feedback table: serve, log, ingest, retrain, gate, round after round."""
