"""A small, reusable helper for setting up logging.

Import it from any script in the project:

    from simple_logger import get_logger

    log = get_logger("cleaning", log_file="logs/cleaning.log")
    log.info("Loaded %d rows", 1200)

Messages go to the terminal and, optionally, to a file. Calling
get_logger() twice with the same name returns the same logger without
adding duplicate handlers, a classic cause of every line being printed
two or three times.
"""

import logging
from pathlib import Path

# One format for every handler: time, level, logger name, message.
DEFAULT_FORMAT = "%(asctime)s | %(levelname)-8s | %(name)s | %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def get_logger(
    name: str,
    level: int = logging.INFO,
    log_file: "str | Path | None" = None,
) -> logging.Logger:
    """Return a logger that writes to the console and optionally to a file.

    name     -- usually the script or module name, shown on every line
    level    -- the lowest level to record, e.g. logging.DEBUG
    log_file -- a path for a log file; its folder is created if needed
    """
    logger = logging.getLogger(name)
    logger.setLevel(level)

    # If handlers already exist, this logger was configured earlier.
    # Returning early prevents duplicate output.
    if logger.handlers:
        return logger

    formatter = logging.Formatter(DEFAULT_FORMAT, datefmt=DATE_FORMAT)

    console = logging.StreamHandler()
    console.setFormatter(formatter)
    logger.addHandler(console)

    if log_file is not None:
        path = Path(log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        # utf-8 keeps accented characters intact on every system.
        file_handler = logging.FileHandler(path, encoding="utf-8")
        file_handler.setFormatter(formatter)
        logger.addHandler(file_handler)

    # Do not pass messages up to the root logger as well; otherwise a
    # basicConfig() call elsewhere would print each message a second time.
    logger.propagate = False
    return logger


if __name__ == "__main__":
    # A quick demonstration when the file is run directly.
    demo = get_logger("demo", level=logging.DEBUG)
    demo.debug("Debug messages help while developing.")
    demo.info("Info messages describe normal progress.")
    demo.warning("Warnings flag something odd that did not stop the run.")
    demo.error("Errors mean a step failed.")
