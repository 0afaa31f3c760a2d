"""Names shared by the writer (`synthetic`) and the readers of a DAS data directory."""

from __future__ import annotations

import datetime as dt

FORMAT = "jaxtrain-das-v1"  # root attribute `format` of the files `synthetic.generate` writes
LABELS_FILE = "labels.json"  # beside the recordings: file name -> label entry
CLASS_NAMES = ("earthquake", "quarry_blast", "noise")  # class ids 0, 1, 2
NOISE = CLASS_NAMES.index("noise")


def iso_time(unix: float) -> str:
    """Unix seconds as an ISO 8601 UTC string with milliseconds ("...T12:00:00.000Z")."""
    stamp = dt.datetime.fromtimestamp(unix, tz=dt.UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")
