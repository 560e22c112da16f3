"""The sync job end to end on the real stack: git host -> RQ -> worker -> API server -> Redis."""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry

from pullbridge import keys
from tests.worker.sync_manifests import app_files, app_version, cm_value, configmap, sync_repo, widget, widget_crd

pytestmark = pytest.mark.stack


def test_push_applies_then_a_change_configures_only_what_changed(harness, git_repo, kube, namespace):
    repo = git_repo("app")
    harness.configure(repo)
    sha1 = repo.commit_and_push("v1", app_files("1.0"))
    first = harness.sync(sha1)
    assert first["result"] == "success", first
    assert first["sha"] == sha1
    assert first["counts"] == {"created": 3, "configured": 0, "unchanged": 0, "deleted": 0, "skipped": 0}
    assert app_version(kube, namespace) == "1.0" and cm_value(kube, namespace, "settings") == "a"
    assert harness.state()["applied_sha"] == sha1
    assert harness.conn.zcard(keys.wanted("app")) == 0

    core = client.CoreV1Api(kube)
    settings_rv = core.read_namespaced_config_map("settings", namespace).metadata.resource_version
    sha2 = repo.commit_and_push("v2", app_files("2.0"))
    second = harness.sync(sha2)
    assert second["result"] == "success", second
    assert second["counts"]["configured"] == 2 and second["counts"]["unchanged"] == 1
    assert app_version(kube, namespace) == "2.0" and cm_value(kube, namespace, "nginx-conf") == "2.0"
    assert core.read_namespaced_config_map("settings", namespace).metadata.resource_version == settings_rv

    from worker import history
    record = history.get_record(harness.conn, second["id"])
    actions = {c["object"]: (c["action"], c["source"]) for c in record["changes"]}
    assert actions[f"Deployment/{namespace}/fluxdemo"] == ("configured", "deploy/app.yaml, doc 2")
    assert actions[f"ConfigMap/{namespace}/settings"] == ("unchanged", "deploy/extra/settings.yaml, doc 1")


def test_drift_made_by_hand_is_reverted(harness, git_repo, kube, namespace):
    repo = git_repo("drift")
    harness.configure(repo, transport="file")
    sha = repo.commit_and_push("v1", app_files("1.0"))
    assert harness.sync(sha)["result"] == "success"
    client.CoreV1Api(kube).patch_namespaced_config_map("nginx-conf", namespace, {"data": {"value": "hacked"}})
    again = harness.sync(None, reason="periodic")
    assert again["counts"]["configured"] == 1 and cm_value(kube, namespace, "nginx-conf") == "1.0"


def test_removed_file_is_pruned_unless_prune_is_disabled(harness, git_repo, kube, namespace):
    repo = git_repo("prune")
    harness.configure(repo)
    files = app_files("1.0")
    files["deploy/keep.yaml"] = configmap("keep", "k", "\n  annotations:\n    pullbridge.io/prune: disabled")
    assert harness.sync(repo.commit_and_push("v1", files))["result"] == "success"
    assert cm_value(kube, namespace, "keep") == "k"
    repo.remove("deploy/extra")
    repo.remove("deploy/keep.yaml")
    done = harness.sync(repo.commit_and_push("remove"))
    assert done["result"] == "success", done
    assert done["counts"]["deleted"] == 1 and done["counts"]["skipped"] == 1
    assert cm_value(kube, namespace, "settings") is None
    assert cm_value(kube, namespace, "keep") == "k"
    assert cm_value(kube, namespace, "nginx-conf") == "1.0"



def test_an_object_two_repos_declare_is_not_pruned_while_the_other_still_declares_it(
        harness, git_repo, kube, namespace):
    from worker import history, inventory

    first, second = git_repo("first"), git_repo("second")
    harness.configure_repos([harness.repo_entry("app", first), harness.repo_entry("other", second)])

    def sync(index: int, sha: str) -> dict:
        return history.get_record(harness.conn, sync_repo(harness, index, sha)["id"])

    shared = {"deploy/shared.yaml": configmap("shared", "s")}
    assert sync(0, first.commit_and_push("v1", {**shared, "deploy/own.yaml": configmap("first-own", "f")}))[
        "notes"] == []
    taken = sync(1, second.commit_and_push("v1", dict(shared)))
    assert taken["notes"] == [f"declared by another repo too: ConfigMap/{namespace}/shared (by app); each repo's "
                              "sync overwrites what the other declares (one field manager, pullbridge): declare "
                              "each object in one repo only"]
    calls = []
    original = inventory.declared_elsewhere
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inventory, "declared_elsewhere", lambda *a: calls.append(a) or original(*a))
        unchanged = sync(0, first.commit_and_push("readme", {"README.md": "no manifest changes"}))
    assert unchanged["notes"] == [] and calls == []  # nothing declared anew: no LIST of the inventories

    first.remove("deploy/shared.yaml")
    record = sync(0, first.commit_and_push("drop shared"))
    [change] = [c for c in record["changes"] if c["object"] == f"ConfigMap/{namespace}/shared"]
    assert change["action"] == "skipped" and "still declared by other" in change["detail"]
    assert cm_value(kube, namespace, "shared") == "s"
    shared_id = f"{namespace}_shared__ConfigMap"
    app_inventory = client.CoreV1Api(kube).read_namespaced_config_map(
        inventory.configmap_name("app"), namespace).data[inventory.DATA_KEY]
    assert shared_id not in json.loads(app_inventory)  # app let go of it: "other" keeps it

    second.remove("deploy/shared.yaml")
    second_record = sync(1, second.commit_and_push("drop shared too", {"deploy/left.yaml": configmap("left", "l")}))
    assert any(c["object"] == f"ConfigMap/{namespace}/shared" and c["action"] == "deleted"
               for c in second_record["changes"])
    assert cm_value(kube, namespace, "shared") is None
    assert cm_value(kube, namespace, "first-own") == "f"


def test_empty_render_never_prunes(harness, git_repo, kube, namespace):
    repo = git_repo("empty")
    harness.configure(repo)
    assert harness.sync(repo.commit_and_push("v1", app_files("1.0")))["result"] == "success"
    repo.remove("deploy")
    failed = harness.sync(repo.commit_and_push("wipe"))
    assert failed["result"] == "failure" and "renders no objects" in failed["error"]
    assert cm_value(kube, namespace, "settings") == "a"


def test_invalid_object_leaves_the_cluster_untouched_and_fails_for_good(harness, git_repo, kube, namespace):
    repo = git_repo("invalid")
    harness.configure(repo)
    assert harness.sync(repo.commit_and_push("v1", app_files("1.0")))["result"] == "success"
    bad = app_files("2.0", replicas=-1)  # the ConfigMap change is valid, the Deployment is not
    bad["deploy/new.yaml"] = ("apiVersion: v1\nkind: Service\nmetadata:\n  name: broken\nspec:\n"
                              "  ports:\n    - port: 99999\n")  # a new object, invalid too
    bad_sha = repo.commit_and_push("bad", bad)
    queued = harness.request(bad_sha)
    harness.work()
    record = harness.history()[0]
    assert record["result"] == "failure" and record["sha"] == bad_sha
    assert record["error"].startswith("validation failed for 2 objects, nothing applied: ")
    assert f"Deployment/{namespace}/fluxdemo (deploy/app.yaml, doc 2): spec.replicas: Invalid value: -1" \
        in record["error"]
    assert f"Service/{namespace}/broken (deploy/new.yaml, doc 1): spec.ports[0].port: Invalid value: 99999" \
        in record["error"]
    assert cm_value(kube, namespace, "nginx-conf") == "1.0" and app_version(kube, namespace) == "1.0"
    assert harness.state()["applied_sha"] != bad_sha
    job = Job.fetch(queued.job_id, connection=harness.conn)
    assert job.get_status() == "failed"
    assert queued.job_id in FailedJobRegistry(keys.SYNC_QUEUE, connection=harness.conn).get_job_ids()
    assert not Queue(keys.SYNC_QUEUE, connection=harness.conn).scheduled_job_registry.get_job_ids()


def test_forward_only_under_out_of_order_requests(harness, git_repo, kube, namespace):
    repo = git_repo("order")
    harness.configure(repo)
    shas = [repo.commit_and_push(f"v{i}", app_files(f"{i}.0")) for i in (1, 2, 3)]
    # Webhooks arrive newest first, then the older ones: one job, the newest applied.
    for sha in (shas[2], shas[0], shas[1]):
        harness.request(sha)
    harness.work()
    runs = harness.history()
    assert len(runs) == 1 and runs[0]["sha"] == shas[2] and app_version(kube, namespace) == "3.0"
    # A late webhook for an older commit changes nothing.
    late = harness.sync(shas[0])
    assert late["result"] == "skipped" and late["sha"] is None
    assert app_version(kube, namespace) == "3.0" and harness.state()["applied_sha"] == shas[2]
    # An explicit rollback does go back.
    back = harness.sync(shas[0], reason="rollback")
    assert back["result"] == "success" and app_version(kube, namespace) == "1.0"


def test_git_host_unreachable_retries_and_keeps_the_wanted_commit(harness, git_repo, redis_conn):
    repo = git_repo("down")
    harness.configure(repo)
    sha = repo.commit_and_push("v1", app_files("1.0"))
    config = harness.config_path.read_text().replace(repo.http_url, "http://127.0.0.1:9/gone.git")
    harness.config_path.write_text(config)
    from pullbridge.config import load_config
    harness.config = load_config(harness.config_path)
    queued = harness.request(sha)
    harness.work()
    job = Job.fetch(queued.job_id, connection=redis_conn)
    assert job.get_status() == "scheduled" and job.retries_left == 1
    assert harness.history()[0]["result"] == "retrying"
    assert "git host unreachable" in harness.history()[0]["error"]
    assert [s.decode() for s in redis_conn.zrange(keys.wanted("app"), 0, -1)] == [sha]


def test_crd_and_its_objects_in_one_commit(harness, git_repo, kube, namespace, widget_groups):
    group = widget_groups()
    repo = git_repo("crd")
    harness.configure(repo)
    done = harness.sync(repo.commit_and_push("crd", {"a-widget.yaml": widget(group, 3),
                                                    "z-crd.yaml": widget_crd(group)}))
    assert done["result"] == "success", done
    got = client.CustomObjectsApi(kube).get_namespaced_custom_object(group, "v1", namespace, "widgets", "w1")
    assert got["spec"]["size"] == 3


def test_report_mode_changes_nothing_but_records_what_would_change(harness, git_repo, kube, namespace):
    repo = git_repo("report")
    harness.configure(repo, mode="report")
    done = harness.sync(repo.commit_and_push("v1", app_files("1.0")))
    assert done["result"] == "success" and done["dry_run"] and done["counts"]["created"] == 3
    assert cm_value(kube, namespace, "settings") is None
    assert "applied_sha" not in harness.state()


def test_commit_statuses_are_queued_running_then_final(harness, git_repo, redis_conn):
    repo = git_repo("status")
    harness.configure(repo, provider="gitea", repository="o/r",  # the stack's git URL names no owner
                      status={"token_env": "PB_TEST_SECRET", "project": "o/r", "api_url": "http://127.0.0.1:9/api/v1"})
    good = repo.commit_and_push("v1", app_files("1.0"))
    harness.sync(good)
    bad = repo.commit_and_push("bad", app_files("2.0", replicas=-1))
    harness.sync(bad)
    status_queue = Queue(keys.STATUS_QUEUE, connection=redis_conn)
    posted = [(j.args[0], j.args[1], j.args[2]) for j in status_queue.get_jobs()]
    assert posted == [("app", good, "running"), ("app", good, "success"),
                      ("app", bad, "running"), ("app", bad, "failure")]


def test_sync_results_feed_metrics_and_alert_once_per_change_of_state(harness, git_repo, redis_conn,
                                                                        monkeypatch):
    """A failing sync alerts once, its recovery once; every attempt is counted in the metrics."""
    from rq import Queue as RQQueue

    from worker import metrics

    monkeypatch.setenv("PB_ALERT_URL", "http://127.0.0.1:9/alerts")  # never reached: jobs are only queued
    repo = git_repo("alerts")
    harness.configure(repo)
    data = json.loads(harness.config_path.read_text())
    data["alerts"] = [{"kind": "webhook", "url_env": "PB_ALERT_URL"}]
    harness.config_path.write_text(json.dumps(data))
    harness.configure_from_file()
    alerts_queued = lambda: [j for j in RQQueue(keys.STATUS_QUEUE, connection=redis_conn).get_jobs()  # noqa: E731
                             if "alert" in (j.func_name or "")]

    assert harness.sync(repo.commit_and_push("v1", app_files("1.0")))["result"] == "success"
    assert alerts_queued() == []  # the first success is no change of state
    for n in range(2):
        harness.sync(repo.commit_and_push(f"bad{n}", app_files("2.0", replicas=-1)))
    assert len(alerts_queued()) == 1  # two failures, one alert
    assert harness.sync(repo.commit_and_push("fixed", app_files("3.0")))["result"] == "success"
    assert len(alerts_queued()) == 2  # ... and one "recovered"
    body = metrics.exposition(redis_conn, harness.config)[0].decode()
    assert 'result="failure"' in body and 'result="success"' in body


def test_kustomize_overlay_is_synced(harness, git_repo, kube, namespace):
    repo = git_repo("kustomize")
    harness.configure(repo, path="overlay")
    files = {"base/cm.yaml": configmap("conf", "base"),
             "base/kustomization.yaml": "resources: [cm.yaml]\n",
             "overlay/kustomization.yaml": "resources: [../base]\nnamePrefix: prod-\n"}
    done = harness.sync(repo.commit_and_push("kustomize", files))
    assert done["result"] == "success", done
    assert cm_value(kube, namespace, "prod-conf") == "base"


def test_a_kustomization_building_another_repositorys_checkout_fails_for_good(harness, git_repo, kube, namespace):
    """Every repository's checkout lies in the worker's one cache directory: a kustomization
    naming another's as its base must not build that tenant's objects into its own sync."""
    app, tenant = git_repo("app"), git_repo("tenant")
    harness.configure_repos([harness.repo_entry("app", app, path="deploy"),
                             harness.repo_entry("other", tenant, path="deploy")])
    tenant_sha = tenant.commit_and_push("v1", {"deploy/kustomization.yaml": "resources: [cm.yaml]\n",
                                               "deploy/cm.yaml": configmap("tenant-only", "t")})
    sync_repo(harness, 1, tenant_sha)
    reach = f"../../../other.checkouts/{tenant_sha}/deploy"
    bad_sha = app.commit_and_push("reach", {"deploy/kustomization.yaml": f"resources: [{reach}]\nnamePrefix: app-\n"})
    queued = harness.request(bad_sha)
    harness.work()
    record = harness.history()[0]
    assert record["result"] == "failure" and record["sha"] == bad_sha
    assert record["error"] == f"deploy/kustomization.yaml: resources entry '{reach}' leads outside the repository"
    assert cm_value(kube, namespace, "app-tenant-only") is None
    assert Job.fetch(queued.job_id, connection=harness.conn).get_status() == "failed"
    assert not Queue(keys.SYNC_QUEUE, connection=harness.conn).scheduled_job_registry.get_job_ids()


def test_a_value_of_the_wrong_type_fails_for_good_naming_the_object(harness, git_repo, kube, namespace):
    """The API server answers 500 to a server-side apply whose body does not fit the schema (a
    ConfigMap value that is a YAML number): retrying cannot help, so the sync fails at once, by name."""
    repo = git_repo("typed")
    harness.configure(repo)
    files = app_files("1.0")
    files["deploy/port.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: port\ndata:\n  port: 8080\n"
    bad_sha = repo.commit_and_push("v1", files)
    queued = harness.request(bad_sha)
    harness.work()
    record = harness.history()[0]
    assert record["result"] == "failure" and record["sha"] == bad_sha
    assert f"ConfigMap/{namespace}/port (deploy/port.yaml, doc 1)" in record["error"]
    assert ".data.port: expected string" in record["error"]
    assert Job.fetch(queued.job_id, connection=harness.conn).get_status() == "failed"
    assert not Queue(keys.SYNC_QUEUE, connection=harness.conn).scheduled_job_registry.get_job_ids()


def test_a_commit_with_many_invalid_objects_lists_every_one_on_its_page(harness, git_repo, kube, namespace):
    """The error, and so the commit status and alert, names the first ten invalid objects; the
    sync's page, where the status links, names every one: one push shows all there is to fix."""
    from tests.pages.conftest import redis_url
    from webhook import create_app

    repo = git_repo("many")
    harness.configure(repo)
    files = {f"deploy/cm{i:03}.yaml": configmap(f"cm{i:03}", str(i)) for i in range(100)}
    for i in range(12):
        files[f"deploy/svc{i:02}.yaml"] = (f"apiVersion: v1\nkind: Service\nmetadata:\n  name: svc{i:02}\nspec:\n"
                                           "  ports:\n    - port: 99999\n")
    failed = harness.sync(repo.commit_and_push("many", files))
    assert failed["result"] == "failure" and failed["error"].endswith(" (and 2 more)")
    assert failed["error"].startswith("validation failed for 12 objects, nothing applied: Service/")  # in 140 chars
    assert cm_value(kube, namespace, "cm000") is None  # nothing applied
    app = create_app(harness.config, redis_url=redis_url(harness.conn))
    try:
        page = app.test_client().get(f"/syncs/{failed['id']}").get_data(as_text=True)
    finally:
        app.extensions["pullbridge"].conn.close()
    for i in range(12):
        assert f"<code>deploy/svc{i:02}.yaml</code> (document 1)" in page
    assert "more invalid object" not in page


def test_an_object_whose_apiversion_was_dropped_fails_the_sync_and_is_not_pruned(harness, git_repo, kube, namespace):
    repo = git_repo("noapi")
    harness.configure(repo)
    files = app_files("1.0")
    assert harness.sync(repo.commit_and_push("v1", files))["result"] == "success"
    files["deploy/extra/settings.yaml"] = "kind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  value: b\n"
    failed = harness.sync(repo.commit_and_push("no apiVersion", files))
    assert failed["result"] == "failure", failed
    assert failed["error"].startswith("deploy/extra/settings.yaml, doc 1: not a Kubernetes object")
    assert cm_value(kube, namespace, "settings") == "a"


def test_an_immutable_field_changed_is_refused_saying_so(harness, git_repo, kube, namespace):
    """The API server quotes a Job's whole template when refusing a change to it; the error keeps why."""
    job = ("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\nspec:\n  template:\n    spec:\n"
           "      restartPolicy: Never\n      containers: [{{name: migrate, image: 'busybox:{tag}'}}]\n")
    repo = git_repo("immutable")
    harness.configure(repo)
    assert harness.sync(repo.commit_and_push("v1", {"deploy/job.yaml": job.format(tag="1.36")}))["result"] == "success"
    failed = harness.sync(repo.commit_and_push("v2", {"deploy/job.yaml": job.format(tag="1.37")}))
    assert failed["result"] == "failure", failed
    assert failed["error"].startswith(f"validation failed, nothing applied: Job/{namespace}/migrate "
                                      "(deploy/job.yaml, doc 1): spec.template: Invalid value: {")
    assert failed["error"].endswith(": field is immutable"), failed["error"]


def test_every_misspelt_kind_is_named_at_once(harness, git_repo, kube, namespace):
    repo = git_repo("typos")
    harness.configure(repo)
    files = app_files("1.0")
    files["deploy/a.yaml"] = configmap("a", "1").replace("kind: ConfigMap", "kind: ConfigMapp")
    files["deploy/b.yaml"] = configmap("b", "1").replace("kind: ConfigMap", "kind: Confgmap")
    failed = harness.sync(repo.commit_and_push("typos", files))
    assert failed["result"] == "failure", failed
    assert failed["error"] == ("validation failed for 2 objects, nothing applied: "
                               "Confgmap/b (deploy/b.yaml, doc 1): the API server has no kind Confgmap in v1; "
                               "ConfigMapp/a (deploy/a.yaml, doc 1): the API server has no kind ConfigMapp in v1")
    assert cm_value(kube, namespace, "settings") is None  # nothing applied


def test_an_unknown_kind_and_an_invalid_object_are_named_in_one_failure(
        harness, git_repo, kube, namespace, widget_groups):
    """The objects whose kind the API server serves are still dry-run: one push names all that is wrong.
    A Widget whose CRD the push declares is not unknown (it is not dry-run either: its CRD would have
    to be written first, and nothing is)."""
    group = widget_groups()
    repo = git_repo("unknown-and-invalid")
    harness.configure(repo)
    files = app_files("1.0", replicas=-1)
    files["deploy/a.yaml"] = configmap("a", "1").replace("kind: ConfigMap", "kind: ConfigMapp")
    files["deploy/crd.yaml"] = widget_crd(group)
    files["deploy/widget.yaml"] = widget(group, 1)
    failed = harness.sync(repo.commit_and_push("typo and invalid", files))
    assert failed["result"] == "failure", failed
    assert failed["error"] == (
        "validation failed for 2 objects, nothing applied: "
        "ConfigMapp/a (deploy/a.yaml, doc 1): the API server has no kind ConfigMapp in v1; "
        f"Deployment/{namespace}/fluxdemo (deploy/app.yaml, doc 2): "
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0"), failed
    assert cm_value(kube, namespace, "settings") is None  # nothing applied
    with pytest.raises(client.ApiException) as info:
        client.ApiextensionsV1Api(kube).read_custom_resource_definition(f"widgets.{group}")
    assert info.value.status == 404
