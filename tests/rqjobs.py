"""Job functions for tests, importable by path as RQ needs."""


def add(a: int, b: int) -> int:
    return a + b
