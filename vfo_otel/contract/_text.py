"""The one escaping rule for text going into an event. Pure."""

from __future__ import annotations

__all__ = ["clean_text"]


def clean_text(text: str) -> str:
    """Valid UTF-8, always.

    Protobuf strings must be valid UTF-8, and a Python ``str`` may hold lone surrogates
    (``os.fsdecode`` of a non-UTF-8 file name, ``surrogateescape``, a broken JSON ``\\ud800``)
    that no protobuf message accepts. A surrogate pair is combined into its character;
    every lone surrogate becomes U+FFFD (the replacement character). Other text is returned
    unchanged (the common case costs one ``isascii``, or one encode).
    """
    if text.isascii():  # no surrogate is ASCII
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
