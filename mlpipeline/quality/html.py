"""A small, self-contained HTML page for a report: a summary list and one table.

Readable in a browser or as an MLflow artifact, with no JavaScript and no external assets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}
tr.fail td{background:#fde8e8} tr.warn td{background:#fff6db} tr.pass td{color:#555}
code{font-size:.85rem}
"""


def render(
    title: str, summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], status_key: str
) -> str:
    """A page with ``summary`` as a definition list and ``rows`` as a table.

    Each row's ``status_key`` value (``fail``, ``warn`` or ``pass``) colours its line.
    """
    items = "".join(
        f"<dt>{escape(str(k))}</dt><dd>{escape(str(v))}</dd>" for k, v in summary.items()
    )
    columns = [c for c in (rows[0] if rows else {}) if c != status_key]
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        f'<tr class="{escape(str(row.get(status_key, "")))}">'
        + "".join(f"<td>{escape(_text(row.get(c)))}</td>" for c in columns)
        + "</tr>"
        for row in rows
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1><dl>{items}</dl>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></body></html>\n"
    )


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
