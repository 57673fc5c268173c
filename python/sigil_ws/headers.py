"""HTTP headers: a case-insensitive, multi-valued mapping."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

__all__ = ["Headers", "get_header"]


class Headers(Mapping[str, str]):
    """Case-insensitive mapping of header names to values, keeping repeated headers.

    ``headers[name]`` is the first value; :meth:`get_all` gives every value in order.
    Iteration yields each distinct name once, as first sent.

    Example:
        >>> h = Headers([("Set-Cookie", "a=1"), ("set-cookie", "b=2")])
        >>> h["SET-COOKIE"], h.get_all("set-cookie")
        ('a=1', ['a=1', 'b=2'])
    """

    __slots__ = ("_index", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] | Mapping[str, str] = ()) -> None:
        pairs = list(items.items()) if isinstance(items, Mapping) else list(items)
        self._items: list[tuple[str, str]] = [(str(k), str(v)) for k, v in pairs]
        self._index: dict[str, list[str]] = {}
        for name, value in self._items:
            self._index.setdefault(name.lower(), []).append(value)

    def __getitem__(self, name: str) -> str:
        return self._index[name.lower()][0]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for name, _ in self._items:
            if (low := name.lower()) not in seen:
                seen.add(low)
                yield name

    def __len__(self) -> int:
        return len(self._index)

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order; ``[]`` when absent."""
        return list(self._index.get(name.lower(), []))

    def raw_items(self) -> list[tuple[str, str]]:
        """All ``(name, value)`` pairs as received, repeated names included."""
        return list(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._index == other._index
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


def get_header(
    headers: Headers | Mapping[str, str] | Iterable[tuple[str, str]], name: str
) -> str | None:
    """The first value of header ``name``, compared case-insensitively; ``None`` if absent.

    Args:
        headers: a :class:`Headers`, any mapping, or ``(name, value)`` pairs.
        name: the header name, in any case.

    Example:
        >>> get_header([("Upgrade", "websocket")], "upgrade")
        'websocket'
    """
    if isinstance(headers, Headers):
        return headers.get(name)
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    wanted = name.lower()
    for key, value in pairs:
        if key.lower() == wanted:
            return value
    return None
