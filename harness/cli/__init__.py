"""The ``harness`` command: the only place that knows argparse."""
