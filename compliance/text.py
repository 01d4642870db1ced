"""Text that is safe to show: control characters escaped (terminal output, the PDF, error lines)."""

from __future__ import annotations

import re

# C0 controls except tab, newline and carriage return, DEL, C1 controls, and the Unicode bidi overrides / isolates
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def escape_controls(text: str) -> str:
    """``text`` with every control character written as a visible escape (``\\x1b``, ``\\u202e``)."""
    return CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                        else f"\\u{ord(m.group()):04x}", text)
