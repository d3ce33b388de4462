"""How a request names its tab (docs/protocol.md §2): the header an API call sends
and the form field a plain HTML form posts, both carrying the tab token."""

from __future__ import annotations

from typing import Final

__all__ = ["TAB_FORM_FIELD", "TAB_HEADER"]

TAB_HEADER: Final = "X-SessionWatch-Tab"
TAB_FORM_FIELD: Final = "_sessionwatch_tab"
