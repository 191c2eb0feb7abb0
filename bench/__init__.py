"""``make bench``: the experiments of issue 6 on the native stack, written up as a report."""
