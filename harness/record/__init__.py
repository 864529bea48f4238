"""What was measured: HDR histograms of latency, service time and lag, per-second windows."""
