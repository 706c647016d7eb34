"""The process: composition root, daemon, logs, metrics, systemd, dead-man's switch."""
