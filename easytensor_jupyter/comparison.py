"""What ``compare`` returns: two versions' answers on the same inputs, as data and as a table."""

from __future__ import annotations

import html
import json
from typing import Any

__all__ = ["Comparison"]

_SHOWN = 20
_CELL = 120


def _short(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= _CELL else text[: _CELL - 1] + "…"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


class Comparison:
    """``agreement`` (0-1), ``cases``, ``differing`` (index, input, a, b), ``latency_ms``."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = payload
        self.model_id: str = payload["model_id"]
        self.a: int = payload["a"]
        self.b: int = payload["b"]
        self.cases: int = payload["cases"]
        self.agree: int = payload["agree"]
        self.errors: int = payload["errors"]
        self.agreement: float = payload["agreement"]
        self.differing: list[dict[str, Any]] = payload["differing"]
        self.latency_ms: dict[str, dict[str, float | None]] = payload["latency_ms"]
        self.source: str = payload.get("source", "given")

    def headline(self) -> str:
        la, lb = self.latency_ms["a"], self.latency_ms["b"]
        return (
            f"v{self.a} vs v{self.b} of {self.model_id} on {self.cases} "
            f"{'logged' if self.source == 'logged' else 'given'} inputs: "
            f"{self.agree} agree ({self.agreement:.1%}), {len(self.differing)} differ"
            f"{f' ({self.errors} with errors)' if self.errors else ''}; median latency "
            f"v{self.a} {_ms(la['median'])}, v{self.b} {_ms(lb['median'])}"
        )

    def __repr__(self) -> str:
        lines = [self.headline()]
        for case in self.differing[:_SHOWN]:
            lines.append(
                f"  [{case['index']}] {_short(case['input'])}: v{self.a} {_short(case['a'])}"
                f" | v{self.b} {_short(case['b'])}"
            )
        if len(self.differing) > _SHOWN:
            lines.append(f"  ... {len(self.differing) - _SHOWN} more in .differing")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        e = html.escape
        la, lb = self.latency_ms["a"], self.latency_ms["b"]
        rows = "".join(
            f"<tr><td>{c['index']}</td><td><code>{e(_short(c['input']))}</code></td>"
            f"<td><code>{e(_short(c['a']))}</code></td>"
            f"<td><code>{e(_short(c['b']))}</code></td></tr>"
            for c in self.differing[:_SHOWN]
        )
        more = (
            f"<p>{len(self.differing) - _SHOWN} more in <code>.differing</code></p>"
            if len(self.differing) > _SHOWN
            else ""
        )
        table = (
            "<table><thead><tr><th>#</th><th>input</th>"
            f"<th>v{self.a}</th><th>v{self.b}</th></tr></thead><tbody>{rows}</tbody></table>"
            if rows
            else "<p>No differences.</p>"
        )
        return (
            '<div class="easytensor-compare">'
            f"<p><b>v{self.a} vs v{self.b}</b> of <code>{e(self.model_id)}</code>: "
            f"{self.agree} of {self.cases} agree (<b>{self.agreement:.1%}</b>)</p>"
            "<table><thead><tr><th>latency</th><th>median</th><th>mean</th><th>p90</th></tr>"
            "</thead><tbody>"
            f"<tr><td>v{self.a}</td><td>{_ms(la['median'])}</td><td>{_ms(la['mean'])}</td>"
            f"<td>{_ms(la['p90'])}</td></tr>"
            f"<tr><td>v{self.b}</td><td>{_ms(lb['median'])}</td><td>{_ms(lb['mean'])}</td>"
            f"<td>{_ms(lb['p90'])}</td></tr></tbody></table>"
            f"{table}{more}</div>"
        )
