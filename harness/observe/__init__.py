"""Watching a run: the local Prometheus/Alertmanager stack, its report, remote write, Grafana
annotations and dashboards."""
