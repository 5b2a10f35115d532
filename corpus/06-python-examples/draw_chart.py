"""Draw a labelled bar chart of monthly bike rentals and save it as a PNG.

Install matplotlib into the active environment first:

    python -m pip install matplotlib
    python draw_chart.py --output rentals.png

The numbers are built into the script so that it runs anywhere. In a real
project you would load them from a cleaned CSV file with pandas.
"""

import argparse
from pathlib import Path

import matplotlib

# The "Agg" backend draws straight to image files and needs no window, so
# the script also works on servers and in automated jobs.
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (must follow matplotlib.use)

# Sample data: rentals per month, in thousands.
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun",
          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
RENTALS = [12.1, 13.4, 18.9, 24.3, 30.8, 35.2,
           37.9, 36.4, 29.7, 22.5, 15.8, 11.6]


def draw(months: list[str], values: list[float], output: Path) -> Path:
    """Draw the chart and write it to output; return the path written."""
    # One figure with one set of axes: the standard starting point.
    fig, ax = plt.subplots(figsize=(9, 4.5))

    # Highlight the busiest month in a stronger colour to guide the eye.
    peak = values.index(max(values))
    colours = ["#9ecae1"] * len(values)
    colours[peak] = "#3182bd"
    ax.bar(months, values, color=colours)

    # A title that states the finding, and axis labels with units.
    ax.set_title("Rentals peak in July and fall by two thirds in winter")
    ax.set_xlabel("Month (2024)")
    ax.set_ylabel("Rentals (thousands)")

    # Bar charts should start at zero so that bar lengths compare fairly.
    ax.set_ylim(bottom=0)

    # Remove the top and right borders, which add ink but no information.
    ax.spines[["top", "right"]].set_visible(False)

    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=150)
    plt.close(fig)  # free the memory; matters when drawing many charts
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description="Save a monthly rentals chart.")
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("rentals.png"),
        help="where to save the PNG (default: rentals.png)",
    )
    args = parser.parse_args()
    written = draw(MONTHS, RENTALS, args.output)
    print(f"Chart saved to {written.resolve()}")


if __name__ == "__main__":
    main()
