"""Print descriptive statistics for a list of numbers.

Numbers can be typed on the command line or read from one column of a
CSV file:

    python describe_numbers.py 4 8 15 16 23 42
    python describe_numbers.py --csv rentals.csv --column count

Only the standard library is used, so the script runs in any Python 3.9+
environment without installing anything.
"""

import argparse
import csv
import statistics
import sys
from pathlib import Path


def read_column(path: Path, column: str) -> list[float]:
    """Read one column of a CSV file as floats, skipping blank cells."""
    values = []
    # newline="" is what the csv module expects; utf-8 avoids surprises
    # with accented names on Windows, where the default encoding differs.
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or column not in reader.fieldnames:
            raise ValueError(f"column {column!r} not found in {path}")
        for line_number, row in enumerate(reader, start=2):
            cell = (row[column] or "").strip()
            if not cell:
                continue  # a missing value: skip it rather than guess
            try:
                values.append(float(cell))
            except ValueError:
                raise ValueError(
                    f"line {line_number}: {cell!r} is not a number"
                ) from None
    return values


def describe(values: list[float]) -> dict[str, float]:
    """Return a dictionary of summary statistics for the values."""
    if not values:
        raise ValueError("no numbers to describe")
    summary = {
        "count": len(values),
        "mean": statistics.mean(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }
    # The spread needs at least two values; with one value it is undefined.
    if len(values) >= 2:
        summary["stdev"] = statistics.stdev(values)
        q1, _, q3 = statistics.quantiles(values, n=4)
        summary["q1"] = q1
        summary["q3"] = q3
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("numbers", nargs="*", type=float, help="values to describe")
    parser.add_argument("--csv", type=Path, help="read values from this CSV file")
    parser.add_argument("--column", help="column name to use with --csv")
    args = parser.parse_args()

    try:
        if args.csv is not None:
            if not args.column:
                parser.error("--csv needs --column as well")
            values = read_column(args.csv, args.column)
        else:
            values = args.numbers
        summary = describe(values)
    except (OSError, ValueError) as error:
        # Report the problem in one clear line and exit with a failure code.
        print(f"error: {error}", file=sys.stderr)
        return 1

    # Align the labels so the output reads like a small table. The count is
    # a whole number, so it is printed without decimal places.
    for name, value in summary.items():
        shown = f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"
        print(f"{name:>6}: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
