"""Greet someone by name, using logging instead of print.

Run it from a terminal with the project environment active:

    python greeting.py --name Ada
    python greeting.py --name Ada --verbose

The script shows three habits worth copying into every project:
a main() function, command-line arguments parsed with argparse, and
messages sent through the logging module so their detail can be tuned.
"""

import argparse
import logging
from datetime import datetime

# A module-level logger named after the module. Using __name__ means the
# messages say where they came from when several modules log together.
logger = logging.getLogger(__name__)


def part_of_day(hour: int) -> str:
    """Return a friendly word for the given hour (0 to 23)."""
    if 5 <= hour < 12:
        return "morning"
    if 12 <= hour < 18:
        return "afternoon"
    return "evening"


def build_greeting(name: str, hour: int) -> str:
    """Combine the name and the time of day into one sentence."""
    # strip() removes stray spaces, so " Ada " still looks tidy.
    clean_name = name.strip() or "friend"
    return f"Good {part_of_day(hour)}, {clean_name}!"


def parse_args() -> argparse.Namespace:
    """Describe the command-line options and read them."""
    parser = argparse.ArgumentParser(description="Print a friendly greeting.")
    parser.add_argument("--name", default="friend", help="who to greet")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show debugging messages as well",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()

    # Configure logging once, at the entry point. DEBUG shows everything;
    # INFO hides the detailed messages unless --verbose is given.
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-8s %(message)s",
        datefmt="%H:%M:%S",
    )

    now = datetime.now()
    logger.debug("Current time is %s", now.isoformat(timespec="seconds"))
    logger.debug("Name received from the command line: %r", args.name)

    greeting = build_greeting(args.name, now.hour)
    logger.info(greeting)


# This guard runs main() only when the file is executed directly, not when
# another module imports build_greeting() from it.
if __name__ == "__main__":
    main()
