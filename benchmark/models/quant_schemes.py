"""The quantization schemes' names (``evaluate/quant.py`` makes them), apart from the quantizers so that the
config can check ``--set quant_probe=...`` without importing gguf or torch."""

from __future__ import annotations

from snap_bench.errors import SnapBenchError

SCHEMES: tuple[str, ...] = ("shipped", "q8_0", "q4_0", "q4_1", "int4_g32")
_OFF = ("", "off", "none")


def unknown_scheme(name: str) -> SnapBenchError:
    return SnapBenchError(f"quantization scheme {name!r}: expected a comma-separated list of "
                          f"{', '.join(SCHEMES)} (or off)")


def parse_schemes(text: str) -> tuple[str, ...]:
    """``"q4_1, q8_0"`` -> ``("q4_1", "q8_0")``: names stripped and lowercased, repeats dropped in order;
    empty, ``off`` or ``none`` -> ``()``. An unknown name is a :class:`SnapBenchError` listing the valid ones."""
    text = (text or "").strip().lower()
    if text in _OFF:
        return ()
    out: list[str] = []
    for name in (part.strip() for part in text.split(",")):
        if not name:
            continue
        if name not in SCHEMES:
            raise unknown_scheme(name)
        if name not in out:
            out.append(name)
    return tuple(out)
