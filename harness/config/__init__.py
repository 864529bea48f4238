"""What to run: scenarios, arrival profiles, thresholds, durations, the scenario library."""
