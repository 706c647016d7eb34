"""The settings: pydantic-settings over the environment, secrets and the config file."""
