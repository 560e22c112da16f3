"""An object declared twice is refused once namespaces are resolved (for a kind of a CRD in the same
commit, as that CRD's scope says), naming both files, on the real stack."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.worker.sync_manifests import cm_value, configmap, in_namespace, widget, widget_crd
from worker.apply import Applier
from worker.errors import PermanentError
from worker.kube import process_kube
from worker.render import render

pytestmark = pytest.mark.stack


def test_object_without_namespace_and_in_the_default_one_is_declared_twice(harness, git_repo, kube, namespace):
    repo = git_repo("dup")
    harness.configure(repo)  # the repo's namespace is the test's
    in_default = configmap("cfg", "b").replace("name: cfg", f"name: cfg\n  namespace: {namespace}")
    failed = harness.sync(repo.commit_and_push("dup", {"deploy/a.yaml": configmap("cfg", "a"),
                                                       "deploy/b.yaml": in_default}))
    assert failed["result"] == "failure", failed
    assert failed["error"] == (f"ConfigMap/{namespace}/cfg is declared twice: "
                               "deploy/a.yaml, doc 1 and deploy/b.yaml, doc 1")
    assert cm_value(kube, namespace, "cfg") is None  # nothing applied


def test_cluster_scoped_object_with_and_without_a_namespace_is_declared_twice(
        stack, tmp_path, kube, namespace, cluster_role_names):
    name = cluster_role_names("pb-test-dup-")
    role = ("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n"
            f"  name: {name}\n{{ns}}rules: []\n")
    (tmp_path / "a.yaml").write_text(role.format(ns=""))
    (tmp_path / "b.yaml").write_text(role.format(ns=f"  namespace: {namespace}\n"))
    manifests = render(tmp_path)  # as written these differ: the API server's scope makes them one
    applier = Applier(process_kube(), concurrency=2, default_namespace=namespace)
    rbac = client.RbacAuthorizationV1Api(kube)
    with pytest.raises(PermanentError,
                       match=f"^ClusterRole/{name} is declared twice: a.yaml, doc 1 and b.yaml, doc 1$"):
        applier.run(manifests)
    with pytest.raises(client.ApiException) as info:
        rbac.read_cluster_role(name)
    assert info.value.status == 404  # nothing applied


@pytest.fixture
def crds(widget_groups):
    """(group, manifest) of a Widget CRD of a group of the test's own and the given scope; deleted after
    the test, should it have been created."""
    def make(scope: str = "Namespaced") -> tuple[str, str]:
        group = widget_groups()
        return group, widget_crd(group).replace("scope: Namespaced", f"scope: {scope}")
    return make


def crd_is_absent(kube, group: str) -> bool:
    with pytest.raises(client.ApiException) as info:
        client.ApiextensionsV1Api(kube).read_custom_resource_definition(f"widgets.{group}")
    return info.value.status == 404


@pytest.mark.parametrize("scope, ref", [("Namespaced", "Widget/{namespace}/w1"), ("Cluster", "Widget/w1")])
def test_a_custom_object_of_a_crd_in_the_same_commit_declared_with_and_without_a_namespace_is_declared_twice(
        stack, tmp_path, kube, namespace, crds, scope, ref):
    """The API server does not serve the kind yet: its CRD's scope says where the object goes."""
    group, crd = crds(scope)
    (tmp_path / "crd.yaml").write_text(crd)
    (tmp_path / "a.yaml").write_text(widget(group, 1))
    (tmp_path / "b.yaml").write_text(in_namespace(widget(group, 2), namespace))
    applier = Applier(process_kube(), concurrency=2, default_namespace=namespace)
    with pytest.raises(PermanentError, match=f"^{ref.format(namespace=namespace)} is declared twice: "
                                             "a.yaml, doc 1 and b.yaml, doc 1$"):
        applier.run(render(tmp_path))
    assert crd_is_absent(kube, group)  # nothing applied


def test_custom_objects_of_new_crds_are_reported_where_their_scope_puts_them(stack, tmp_path, kube, namespace, crds):
    namespaced, namespaced_crd = crds("Namespaced")
    cluster, cluster_crd = crds("Cluster")
    (tmp_path / "crds.yaml").write_text(namespaced_crd + "---\n" + cluster_crd)
    (tmp_path / "widgets.yaml").write_text(widget(namespaced, 1) + "---\n"
                                           + in_namespace(widget(cluster, 2).replace("w1", "w2"), namespace))
    applier = Applier(process_kube(), concurrency=2, default_namespace=namespace, dry_run_only=True)
    changes = {c.ref: c.action for c in applier.run(render(tmp_path)).changes}
    assert changes == {f"CustomResourceDefinition/widgets.{namespaced}": "created",
                       f"CustomResourceDefinition/widgets.{cluster}": "created",
                       f"Widget/{namespace}/w1": "created", "Widget/w2": "created"}
    assert crd_is_absent(kube, namespaced) and crd_is_absent(kube, cluster)  # report mode writes nothing
