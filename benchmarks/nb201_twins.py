"""How nb201 cells that hash alike show in the tables: rows per hash in nb201.csv and the
spread of their values, and how many of nb201_zc.csv's hashes a fill in table order met first
by another string than the representative (``SearchSpace.canonical``).

    python benchmarks/nb201_twins.py    # from the project root, ../shared/data present
"""

from __future__ import annotations

import csv

import numpy as np

from archrank.spaces import get_space


def main() -> None:
    space = get_space("nb201")
    with open("../shared/data/nb201.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    groups: dict[str, list[float]] = {}
    for row in rows:
        groups.setdefault(space.hash(space.parse(row["arch"])), []).append(
            float(row["cifar10_test"]))
    spread = [max(v) - min(v) for v in groups.values() if len(v) > 1]
    print(f"nb201.csv: {len(rows)} rows, {len(groups)} hashes, {len(spread)} with several "
          f"rows; their values spread {np.mean(spread):.2f} on average, {max(spread):.2f} at most")
    with open("../shared/data/nb201_zc.csv", newline="") as fh:
        table = [r for r in csv.DictReader(fh) if r["dataset"] == "cifar10"]
    first: dict[str, object] = {}
    for row in table:
        cell = space.parse(row["arch"])
        first.setdefault(space.hash(cell), cell)
    other = sum(space.canonical(c) != c for c in first.values())  # type: ignore[arg-type]
    print(f"nb201_zc.csv (cifar10 rows): {len(first)} hashes, {other} met first by another "
          "string than the representative")


if __name__ == "__main__":
    main()
