"""RQ job functions for the page tests, importable by path as RQ needs."""


def boom(message: str) -> None:
    raise RuntimeError(message)


def hold(key: str) -> str:
    """Run until the test pushes to ``key`` (so the job is seen running), at most 10 minutes."""
    from rq import get_current_job

    get_current_job().connection.blpop([key], timeout=600)
    return "released"
