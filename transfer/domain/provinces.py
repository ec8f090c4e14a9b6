"""The 34 provincial-level units (since 1 July 2025) and their codes."""

from __future__ import annotations

import csv
import functools
from importlib import resources


@functools.cache
def province_names() -> dict[str, str]:
    """Province code -> name, from the packaged provinces.csv."""
    text = resources.files("transfer.data").joinpath("provinces.csv").read_text(encoding="utf-8")
    return {row["code"]: row["name"] for row in csv.DictReader(text.splitlines())}


def is_province(code: str) -> bool:
    return code in province_names()
