"""Every Redis key and RQ queue name Pullbridge uses, in one place.

Why: the web receiver, the workers, the scheduler and the CLI all touch the
same keys; naming them once keeps them from drifting apart.  Everything lives
under the ``pb:`` prefix so a shared Redis stays readable.
"""

SYNC_QUEUE = "pullbridge-sync"
STATUS_QUEUE = "pullbridge-status"
IMAGES_QUEUE = "pullbridge-images"
# Every RQ queue the workers serve, by the short name `pullbridge queue --queue NAME` takes.  The
# workers, the CLI, the /queue page and the metrics all go through this one list.
QUEUES = {"sync": SYNC_QUEUE, "status": STATUS_QUEUE, "images": IMAGES_QUEUE}

SYNC_JOB = "worker.jobs.sync"

# STRING with a 60 s expiry: the web receiver's /readyz writes it, to know Redis takes writes.
READYZ = "pb:web:readyz"


def wanted(repo: str) -> str:
    """ZSET of commit shas a webhook asked for, scored by first-seen time (ms)."""
    return f"pb:repo:{repo}:wanted"


def suspended_told(repo: str) -> str:
    """SET of wanted shas whose commit status already says the repo is suspended."""
    return f"pb:repo:{repo}:suspended:told"


def queued(repo: str) -> str:
    """STRING: id of the sync job waiting in the queue for this repo, if any."""
    return f"pb:repo:{repo}:queued"


def queued_adrift(repo: str) -> str:
    """STRING: "<job id> <enqueued_at> <epoch s>", when the queued job was first seen
    popped from its queue but not yet taken by a worker (``release_dead_marker``)."""
    return f"pb:repo:{repo}:queued:adrift"


def lock(repo: str) -> str:
    """STRING with a TTL: held by the worker that is syncing this repo."""
    return f"pb:repo:{repo}:lock"


def state(repo: str) -> str:
    """HASH: applied sha, applied_at, last result, suspended, held sha, ..."""
    return f"pb:repo:{repo}:state"


def history(repo: str) -> str:
    """LIST of sync records (JSON), newest first, capped."""
    return f"pb:repo:{repo}:history"


def sync_record(sync_id: str) -> str:
    """STRING (JSON): one sync's full record, for /syncs/<id>."""
    return f"pb:sync:{sync_id}"


def sync_job_trail(job_id: str) -> str:
    """HASH with a TTL (as long as sync records): what sync job ``job_id`` became, for the
    ``/syncs/<job id>`` link of the receiver's "pending" once RQ has dropped the job:
    ``sync_id`` (its newest sync record) or ``next_job_id`` (the job it handed its commits to)."""
    return f"pb:syncjob:{job_id}"


def delivery(repo: str, delivery_id: str) -> str:
    """STRING with a TTL: a webhook delivery already accepted (deduplication)."""
    return f"pb:delivery:{repo}:{delivery_id}"


def status_order(repo: str, sha: str) -> str:
    """HASH per commit: ``enqueued`` (last sequence handed out), ``posted``
    (highest sequence posted) and ``result`` (the last success, failure or error
    posted).  A status job whose sequence is below ``posted`` is stale and
    dropped, so a late older status never overwrites a newer one; one that may
    not replace a result (``keep_result``) is dropped once there is one."""
    return f"pb:status:{repo}:{sha}"


def status_lock(repo: str, sha: str) -> str:
    """STRING with a TTL: held while one status for this commit is being posted."""
    return f"pb:status:{repo}:{sha}:lock"


def alert_state(repo: str) -> str:
    """STRING: last alerted sync state of the repo, ``ok`` or ``failing``."""
    return f"pb:repo:{repo}:alert-state"


def drift_check_alert_state(repo: str) -> str:
    """STRING: last alerted state of the repo's periodic drift checks, ``ok`` or ``failing``."""
    return f"pb:repo:{repo}:drift-check-alert-state"


def alert_once(key: str) -> str:
    """STRING with a TTL: an alert already sent for this event (e.g. a drift sync id)."""
    return f"pb:alert-once:{key}"


def metrics_counters() -> str:
    """HASH of counter values, field ``<name>|<repo>|<label>`` -> count (see worker.metrics)."""
    return "pb:metrics:counters"


def metrics_durations(repo: str) -> str:
    """HASH: sync duration histogram of a repo: bucket upper bounds -> count, plus sum and count."""
    return f"pb:metrics:durations:{repo}"


def metrics_last_success() -> str:
    """HASH repo -> unix time of its last successful sync."""
    return "pb:metrics:last-success"


IMAGE_SCAN_JOB = "worker.images.scan.scan_repo"


def image_tags(image: str) -> str:
    """STRING (JSON list) with a TTL: the tags a registry listed for ``host/name``."""
    return f"pb:img:{image}:tags"


def image_tag_info(image: str) -> str:
    """HASH with a TTL: tag -> JSON {digest, created} for ``host/name``."""
    return f"pb:img:{image}:taginfo"


def image_scan_queued(repo: str) -> str:
    """STRING with a TTL: id of the image scan job waiting in the queue for this repo."""
    return f"pb:repo:{repo}:imagescan"


def image_scan_fresh(repo: str) -> str:
    """STRING with a TTL: a registry hook joined the waiting image scan of this repo, so that
    scan must bypass the registry cache even if it was queued by the interval."""
    return f"pb:repo:{repo}:imagescan:fresh"


def image_scan_last(repo: str) -> str:
    """STRING with a TTL of ``images.interval``: present while the last periodic scan is recent."""
    return f"pb:repo:{repo}:imagescan:last"


def image_digest_created(image: str) -> str:
    """HASH: manifest digest -> creation time (RFC 3339, '' when unknown) for ``host/name``."""
    return f"pb:img:{image}:created"
def periodic_guard(repo: str) -> str:
    """STRING with a TTL of about one interval: the periodic reconcile of this repo already ran
    (SET NX PX), so duplicates from several schedulers do nothing."""
    return f"pb:repo:{repo}:periodic"
