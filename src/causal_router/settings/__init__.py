"""Settings: params.yaml sections, price sheets and the environment, each resolved in one place."""
