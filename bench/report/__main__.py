"""``python -m bench.report <folder>``: rewrite a run's ``report.md`` and charts from its
``results.json``, and print the summary table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.report.document import write_report


def main() -> None:
    """Rewrite the report of the results folder named on the command line."""
    folder = Path(sys.argv[1])
    print(write_report(folder, json.loads((folder / "results.json").read_text())))


if __name__ == "__main__":
    main()
