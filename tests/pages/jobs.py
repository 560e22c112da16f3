"""RQ job functions for the page tests, importable by path as RQ needs."""


def boom(message: str) -> None:
    raise RuntimeError(message)
