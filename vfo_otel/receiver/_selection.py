"""What a snapshot request selects: an asset's node details and a page of each asset list. Pure."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

__all__ = [
    "DEFAULT_ASSET_PAGE_SIZE",
    "MAX_ASSET_PAGE_SIZE",
    "Selection",
    "asset_page_token",
    "parse_asset_page_token",
]

#: Rows per page of a pipeline's asset list when the request names no size.
DEFAULT_ASSET_PAGE_SIZE = 100
#: Largest asset page a request may ask for.
MAX_ASSET_PAGE_SIZE = 1000


def asset_page_token(pipeline_id: str, after_asset_id: str) -> str:
    """The opaque ``asset_page_token`` of the page of ``pipeline_id``'s assets that starts
    after ``after_asset_id`` ("" = the first page): base64url of a JSON pair."""
    raw = json.dumps([pipeline_id, after_asset_id], ensure_ascii=False, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def parse_asset_page_token(token: str) -> tuple[str, str]:
    """``(pipeline_id, after_asset_id)`` of a token made by :func:`asset_page_token`.

    Raises:
        ValueError: the token was not made by :func:`asset_page_token`.
    """
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw.decode())
    except (ValueError, UnicodeDecodeError):
        value = None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, str) for v in value)
        or not value[0]
    ):
        raise ValueError(
            f"malformed asset_page_token {token!r}: pass a token from Pipeline.asset_page"
            " (assetPage in JSON) of a snapshot"
        )
    return value[0], value[1]


@dataclass(frozen=True)
class Selection:
    """What a snapshot includes beyond the run's totals (hashable: a cache key).

    Attributes:
        pipeline_id, asset_id: the asset whose node details are included, and whose
            summary row is always in its pipeline's ``assets`` ("" = none).
        asset_page_size: rows per page of each pipeline's asset list; 0 means
            :data:`DEFAULT_ASSET_PAGE_SIZE`.
        asset_page_token: from a ``Pipeline.asset_page`` ("" = every pipeline's first
            page): the named pipeline's list starts there.

    Raises:
        ValueError: ``asset_page_size`` over :data:`MAX_ASSET_PAGE_SIZE` or negative, or a
            malformed ``asset_page_token`` (on construction).
    """

    pipeline_id: str = ""
    asset_id: str = ""
    asset_page_size: int = 0
    asset_page_token: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.asset_page_size <= MAX_ASSET_PAGE_SIZE:
            raise ValueError(
                f"asset_page_size must be between 0 (default {DEFAULT_ASSET_PAGE_SIZE}) and"
                f" {MAX_ASSET_PAGE_SIZE}, got {self.asset_page_size}"
            )
        if self.asset_page_token:
            parse_asset_page_token(self.asset_page_token)

    def page(self, pipeline_id: str) -> tuple[int, str]:
        """``(rows per page, start after this asset id)`` of ``pipeline_id``'s asset list."""
        size = self.asset_page_size or DEFAULT_ASSET_PAGE_SIZE
        if self.asset_page_token:
            pid, after = parse_asset_page_token(self.asset_page_token)
            if pid == pipeline_id:
                return size, after
        return size, ""
