"""What a volunteer sets up around runs: probe.toml, informed consent, cron/systemd, list downloads, uploads."""
