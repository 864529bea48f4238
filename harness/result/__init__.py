"""What a run leaves: the result file, merge, the text summary, the HTML report, comparison."""
