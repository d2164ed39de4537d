"""Command-line plumbing shared by the sirenrope tools: defaults from a JSON config file.

Every number a user may want to change lives in ``configs/``; a tool reads its own section
(``synth``, ``train``) of such a file as its defaults, and flags on the command line win.
"""

from __future__ import annotations

import argparse
import json
from typing import Sequence


def parse_with_config(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                      section: str) -> argparse.Namespace:
    """Parse ``argv``; a ``--config FILE`` supplies defaults from ``FILE[section]``.

    Keys are the flags' names with underscores (``batch_size`` for ``--batch-size``).
    Unknown keys and values of the wrong type stop the tool with a message naming the key.
    """
    parser.add_argument("--config", help=f"JSON file whose '{section}' object sets defaults")
    pre, _ = parser.parse_known_args(argv)
    if pre.config:
        try:
            with open(pre.config, "r", encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            parser.error(f"--config {pre.config}: {e}")
        values = doc.get(section) if isinstance(doc, dict) else None
        if not isinstance(values, dict):
            parser.error(f"{pre.config}: needs a '{section}' object")
        actions = {a.dest: a for a in parser._actions}  # noqa: SLF001 (argparse has no API)
        for key, value in values.items():
            action = actions.get(key)
            if action is None or key in ("help", "config"):
                parser.error(f"{pre.config}: {section}.{key}: unknown setting")
            want = type(action.default) if action.default is not None else action.type
            if isinstance(action, argparse._StoreTrueAction):  # noqa: SLF001
                want = bool
            ok = value is None or (isinstance(value, want) if want is not float
                                   else isinstance(value, (int, float)))
            if isinstance(value, bool) and want is not bool:
                ok = False
            if want and not ok:
                parser.error(f"{pre.config}: {section}.{key}: expected {want.__name__}, "
                             f"got {json.dumps(value)}")
            if action.choices is not None and value not in action.choices:
                parser.error(f"{pre.config}: {section}.{key}: {value!r} is not one of "
                             f"{list(action.choices)}")
        parser.set_defaults(**values)
    return parser.parse_args(argv)
