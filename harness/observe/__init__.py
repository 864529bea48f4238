"""Watching a run: the local Prometheus/Alertmanager stack, its report, Grafana annotations and dashboards."""
