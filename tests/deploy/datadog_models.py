"""Loads herd's Datadog files into the official Python client's models
(PyPI datadog-api-client), with type checks, as an import through the API
would: deploy/datadog-dashboard.json into v1 Dashboard, every entry of
deploy/datadog-monitors.json into v1 Monitor.

The client's deserializer checks every field's type, but keeps an enum value
or a oneOf (a widget definition) it does not know as "unparsed" rather than
failing; so every such value is found and reported too.

    python3 tests/deploy/datadog_models.py DASHBOARD.json MONITORS.json

Prints one line per object loaded; exits 1 naming the file and the path of
each problem. Run by tests/deploy/datadog.rs.
"""

import json
import sys

from datadog_api_client import Configuration
from datadog_api_client.model_utils import (
    ModelComposed,
    ModelNormal,
    validate_and_convert_types,
)
from datadog_api_client.v1.model.dashboard import Dashboard
from datadog_api_client.v1.model.monitor import Monitor


def unparsed(obj, path):
    """Paths of every value the client could not parse into its model."""
    found = []
    if getattr(obj, "_unparsed", False):
        found.append(path)
    if isinstance(obj, (ModelNormal, ModelComposed)):
        for key, value in obj._data_store.items():
            found += unparsed(value, f"{path}.{key}")
        for inner in getattr(obj, "_composed_instances", []) or []:
            found += unparsed(inner, path)
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found += unparsed(value, f"{path}[{i}]")
    return found


def load(data, model, path):
    """The model of `data`, or a list of what was wrong with it."""
    try:
        obj = validate_and_convert_types(data, (model,), [path], True, True, Configuration())
    except Exception as e:  # the client's ApiTypeError / ApiValueError
        return None, [f"{path}: {type(e).__name__}: {e}"]
    bad = sorted(set(unparsed(obj, path)))
    # Only the innermost paths: their parents are unparsed because of them.
    leaves = [p for p in bad if not any(q != p and q.startswith(p) for q in bad)]
    return obj, [f"{p}: not a value the {model.__name__} model knows" for p in leaves]


def main(dashboard_file, monitors_file):
    problems = []
    with open(dashboard_file, encoding="utf-8") as f:
        dashboard, bad = load(json.load(f), Dashboard, "dashboard")
    problems += [f"{dashboard_file}: {p}" for p in bad]
    if dashboard is not None:
        print(f"Dashboard {dashboard.title!r}: {len(dashboard.widgets)} widgets")
    with open(monitors_file, encoding="utf-8") as f:
        monitors = json.load(f)
    if not isinstance(monitors, list) or not monitors:
        problems.append(f"{monitors_file}: not a non-empty JSON array of monitors")
        monitors = []
    for i, data in enumerate(monitors):
        monitor, bad = load(data, Monitor, f"monitor[{i}]")
        problems += [f"{monitors_file}: {p}" for p in bad]
        if monitor is not None:
            print(f"Monitor {monitor.name!r}: {monitor.type} {monitor.query}")
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
