"""Use the helper from simple_logger.py inside a tiny analysis step.

    python use_simple_logger.py

Python puts the folder of the running script on its import path, so the
import below works as long as both files sit in the same folder.
"""

import logging
import statistics
import tempfile
from pathlib import Path

from simple_logger import get_logger

# Daily rental counts for one week, with one missing day marked as None.
WEEK = {
    "Mon": 310,
    "Tue": 295,
    "Wed": None,
    "Thu": 342,
    "Fri": 401,
    "Sat": 520,
    "Sun": 488,
}


def main() -> None:
    # Write the log file to the system's temporary folder so that running
    # the example never leaves files behind in the project.
    log_path = Path(tempfile.gettempdir()) / "use_simple_logger.log"
    log = get_logger("weekly", level=logging.DEBUG, log_file=log_path)

    log.info("Starting weekly summary for %d days", len(WEEK))

    known = {}
    for day, count in WEEK.items():
        if count is None:
            # A warning, not an error: the summary can still be computed.
            log.warning("No count recorded for %s; skipping it", day)
            continue
        log.debug("%s: %d rentals", day, count)
        known[day] = count

    busiest = max(known, key=known.get)
    log.info("Average per recorded day: %.1f", statistics.mean(known.values()))
    log.info("Busiest day: %s with %d rentals", busiest, known[busiest])
    log.info("Log also written to %s", log_path)

    # Asking for the same logger again must not duplicate the output.
    same = get_logger("weekly")
    assert same is log and len(same.handlers) == 2


if __name__ == "__main__":
    main()
