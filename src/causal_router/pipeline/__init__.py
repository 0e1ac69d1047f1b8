"""Pipeline stages: plain functions with files in and files out, shared by the CLI, DVC and Prefect."""
