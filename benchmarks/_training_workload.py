"""Synthetic memories for the training benchmarks: short, distinct, checkable facts.

Each fact ties a made-up name to a made-up value, so that the base model
cannot know it and closed-book recall measures only what distillation added.
Deterministic from the seed.
"""

from __future__ import annotations

__all__ = ["facts", "load_average"]

import os
import random

from training.selection import HotMemory

_FIRST = (
    "Ada",
    "Bruno",
    "Chiara",
    "Dmitri",
    "Elif",
    "Farid",
    "Greta",
    "Hugo",
    "Ines",
    "Jonas",
    "Keiko",
    "Lars",
)
_PLACES = (
    "Lisbon",
    "Oslo",
    "Quito",
    "Nairobi",
    "Hanoi",
    "Tallinn",
    "Porto",
    "Tbilisi",
    "Valparaiso",
    "Gdansk",
)
_TEMPLATES = (
    "{name}'s locker code at the {place} office is {number}.",
    "The {place} warehouse ships orders for {name} every {day}.",
    "{name} booked meeting room {number} in {place} for the {day} review.",
    "The spare key for the {place} lab is kept by {name} in drawer {number}.",
    "{name} moved the {place} backup job to {day} at {hour} o'clock.",
)
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def facts(count: int, *, seed: int = 7) -> list[HotMemory]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        name = f"{rng.choice(_FIRST)} {chr(65 + rng.randrange(26))}{chr(97 + rng.randrange(26))}{i}"
        text = _TEMPLATES[i % len(_TEMPLATES)].format(
            name=name,
            place=rng.choice(_PLACES),
            number=rng.randrange(100, 9999),
            day=rng.choice(_DAYS),
            hour=rng.randrange(1, 12),
        )
        topic = name.split(maxsplit=1)[0].lower()
        out.append(HotMemory(f"m{i:04d}", 1, text, (topic,), accesses=rng.randrange(3, 30)))
    return out


def load_average() -> float:
    """The 1-minute load average: other work on the machine skews CPU timings, so it is recorded."""
    return round(os.getloadavg()[0], 2)
