"""Manifests and other documents read as the server reads them: every spelling of one
object reads as that object, and what could be read two ways is refused."""

from __future__ import annotations

from typing import Any

import pytest

from mcpwall.engine.structured import Unreadable, read, read_arguments
from mcpwall.policy.model import Format, StructuredArgument

MANIFEST = StructuredArgument("resource", Format.KUBERNETES_MANIFEST, 1, "default")


def objects(text: str) -> list[tuple[Any, Any, Any]]:
    """(kind, namespace, name) of every document, as the policy sees them."""
    return [
        (
            doc.get("kind"),
            doc.get("metadata", {}).get("namespace"),
            doc.get("metadata", {}).get("name"),
        )
        for doc in read(MANIFEST, text)
    ]


SECRET_IN_KUBE_SYSTEM = ("secret", "kube-system", "s")


@pytest.mark.parametrize(
    "text",
    [
        "kind: Secret\nmetadata: {name: s, namespace: kube-system}\n",
        # escapes in a double-quoted scalar
        'kind: "\\x53ecret"\nmetadata: {name: s, namespace: "kube-\\U00000073ystem"}\n',
        # a folded block scalar
        "kind: >-\n  Secret\nmetadata:\n  name: s\n  namespace: kube-system\n",
        # a non-specific tag
        "kind: ! Secret\nmetadata: {name: s, namespace: ! kube-system}\n",
        # an anchor and an alias
        "metadata: {name: s, namespace: &ns kube-system}\nkind: Secret\nx: *ns\n",
        # a double-quoted line fold
        'kind: "Sec\\\n  ret"\nmetadata: {name: s, namespace: "kube-\n  system"}\n'.replace(
            '"kube-\n  system"', '"kube-\\\n  system"'
        ),
        # a comment naming another namespace
        "kind: Secret  # namespace: team-a\nmetadata:\n  name: s\n  # namespace: team-a\n"
        "  namespace: kube-system\n",
        # flow style, JSON, lower-case kind, explicit !!str
        '{"kind": "Secret", "metadata": {"name": "s", "namespace": "kube-system"}}',
        "metadata: {name: s, namespace: kube-system}\nkind: secret",
        "kind: !!str Secret\nmetadata: {name: s, namespace: kube-system}\n",
        # document markers
        "---\nkind: Secret\nmetadata: {name: s, namespace: kube-system}\n...\n",
    ],
)
def test_every_spelling_reads_as_the_object_it_is(text: str) -> None:
    assert objects(text) == [SECRET_IN_KUBE_SYSTEM]


def test_every_document_is_read_the_bad_one_second_too() -> None:
    text = (
        "kind: ConfigMap\nmetadata: {name: c, namespace: team-a}\n---\n"
        "kind: Secret\nmetadata: {name: s, namespace: kube-system}\n"
    )
    assert objects(text) == [("configmap", "team-a", "c"), SECRET_IN_KUBE_SYSTEM]
    # "--- " with a trailing space: the server does not cut there, a YAML reader does;
    # every document either one sees is judged.
    assert objects(text.replace("\n---\n", "\n--- \n"))[1] == SECRET_IN_KUBE_SYSTEM


def test_a_missing_namespace_is_the_one_the_server_will_use() -> None:
    v1 = "apiVersion: v1\n"
    assert objects(v1 + "kind: Secret\nmetadata: {name: s}\n") == [("secret", "default", "s")]
    # Where the server does not put it in the context's namespace, neither does mcpwall:
    # an all-lower-case kind goes to a cluster-wide path, and so does a kind it does not
    # know to be namespaced; conditions on the namespace then fail closed.
    assert objects(v1 + "kind: secret\nmetadata: {name: s}\n") == [("secret", None, "s")]
    assert objects(v1 + "kind: ClusterRole\nmetadata: {name: r}\n") == [("clusterrole", None, "r")]
    unset = StructuredArgument("resource", Format.KUBERNETES_MANIFEST, 1)
    assert read(unset, "kind: Secret\nmetadata: {name: s}\n")[0]["metadata"] == {"name": "s"}


def test_the_items_of_a_list_are_judged_as_documents() -> None:
    text = "kind: List\nitems:\n- kind: Secret\n  apiVersion: v1\n  metadata: {name: s}\n"
    (listed,) = read(MANIFEST, text)
    assert listed["items"][0]["kind"] == "secret"
    assert listed["items"][0]["metadata"]["namespace"] == "default"


@pytest.mark.parametrize(
    "text",
    [
        "kind: ConfigMap\nkind: Secret\n",  # duplicate keys: the server keeps the last
        "metadata: {namespace: a, namespace: b}\n",
        "kind: ConfigMap\nKind: Secret\n",  # one field to a Go reader
        "base: &b {kind: Secret}\nother:\n  <<: *b\n",  # merge keys
        "kind: Secret\nmetadata: {name: s, annotations: {x: yes}}\n",  # YAML 1.1 boolean
        "spec: {replicas: 0777}\n",  # octal to YAML 1.1, decimal to 1.2
        "spec: {replicas: 1_000}\n",
        "spec: {port: 12:30}\n",  # base 60 to YAML 1.1
        "spec: {when: 2026-01-01}\n",  # a timestamp
        "kind: !Secret Secret\n",  # a tag of its own
        "kind: !!binary U2VjcmV0\n",
        "? [a, b]\n: c\n",  # a key that is not a string
        "kind: [unclosed\n",
        '{"kind": "ConfigMap", "kind": "Secret"}',  # JSON duplicates
        '{"kind": "ConfigMap"} {"kind": "Secret"}',
        "a: &a [*a]\n",  # an alias of itself
        "{kind: Secret}",  # a flow mapping first: the server's decoder takes it for JSON
        "%YAML 1.2\n---\nkind: Secret\n",  # a directive
        "a: " + "[" * 2000 + "]" * 2000 + "\n",
        "\n".join(f"---\nkind: ConfigMap\nmetadata: {{name: c{n}}}" for n in range(25)),
    ],
)
def test_what_could_be_read_two_ways_is_refused(text: str) -> None:
    with pytest.raises(Unreadable):
        read(MANIFEST, text)


def test_an_alias_bomb_is_refused_not_expanded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 10) + "]" for n in range(1, 8)]
    with pytest.raises(Unreadable, match="values"):
        read(MANIFEST, "\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("value", "argv"),
    [
        (["ls", "-l"], ["ls", "-l"]),
        ("ls -l '/var/log/my dir'", ["ls", "-l", "/var/log/my dir"]),
        ('cat "a b"', ["cat", "a b"]),
    ],
)
def test_commands_are_split_as_a_shell_splits_them(value: Any, argv: list[str]) -> None:
    assert read(StructuredArgument("command", Format.ARGV, 1), value) == argv


@pytest.mark.parametrize(
    "value",
    ["ls; rm -rf /", "echo $(id)", "cat `id`", "a && b", "a | b", "ls > x", "ls *", "'open", [1]],
)
def test_commands_a_shell_would_do_more_with_are_refused(value: Any) -> None:
    with pytest.raises(Unreadable):
        read(StructuredArgument("command", Format.ARGV, 1), value)


def test_read_arguments_names_the_argument_and_the_problem() -> None:
    declared = (MANIFEST,)
    assert read_arguments(declared, {"other": 1}) == {"other": 1}  # left out: stays out
    problem = read_arguments(declared, {"resource": "kind: a\nkind: b\n"})
    assert problem == (
        'Argument "resource" (kubernetes-manifest) cannot be read exactly one way: '
        'the key "kind" twice in one mapping'
    )
    assert "expected text" in str(read_arguments(declared, {"resource": {"kind": "Secret"}}))


POLICY = """
version: "1"
tools:
  resources_create_or_update:
    arguments:
      resource: {format: kubernetes-manifest, default_namespace: default}
    rules:
      - name: no sensitive kinds
        action: deny
        when: [{path: "args.resource[*].kind", op: in, value: [Secret, ClusterRoleBinding]}]
      - name: allowed namespaces
        conditions: [{path: "args.resource[*].metadata.namespace", op: in, value: [team-a]}]
  pods_exec:
    arguments:
      command: {format: argv}
    rules:
      - name: no shells
        action: deny
        when: [{path: "args.command[0]", op: in, value: [sh, bash]}]
"""


def verdict(tmp_path: Any, tool: str, args: dict[str, Any]) -> Any:
    from mcpwall.engine.decide import Call, decide
    from mcpwall.policy import load_policy

    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    result = decide(load_policy(path), Call("s", tool, args))
    return (result.allowed, result.step and result.step.value, result.rule)


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ("kind: ConfigMap\nmetadata: {name: c, namespace: team-a}\n", (True, None, None)),
        ("kind: secret\nmetadata: {name: s, namespace: team-a}\n", "no sensitive kinds"),
        (
            "kind: ConfigMap\nmetadata: {name: c, namespace: team-a}\n---\n"
            "kind: ClusterRoleBinding\nmetadata: {name: b}\n",
            "no sensitive kinds",
        ),
        ("kind: ConfigMap\nmetadata: {name: c}\n", "allowed namespaces"),  # default: default
        (
            "kind: ConfigMap\nmetadata: {name: c, namespace: team-a}\n---\n"
            "kind: ConfigMap\nmetadata: {name: d, namespace: kube-system}\n",
            "allowed namespaces",  # every document must hold
        ),
        # No document at all: nothing shows the deny is surely false, and nothing can
        # satisfy the requirement either; the first rule denies.
        ("", "no sensitive kinds"),
        ("kind: ConfigMap\nkind: Secret\n", "(structured arguments)"),
    ],
)
def test_rules_see_every_document_and_fail_closed_both_ways(
    tmp_path: Any, resource: str, expected: Any
) -> None:
    got = verdict(tmp_path, "resources_create_or_update", {"resource": resource})
    if isinstance(expected, str):
        assert got[0] is False and got[2] == expected
    else:
        assert got == expected


def test_a_command_is_judged_by_its_words(tmp_path: Any) -> None:
    assert verdict(tmp_path, "pods_exec", {"command": ["ls", "-l"]})[0]
    assert verdict(tmp_path, "pods_exec", {"command": ["sh", "-c", "id"]})[2] == "no shells"
    assert verdict(tmp_path, "pods_exec", {"command": "'sh' -c id"})[2] == "no shells"
    assert verdict(tmp_path, "pods_exec", {"command": "ls; sh"})[1] == "arguments"


def test_validate_warns_on_a_regex_over_a_declared_document(tmp_path: Any) -> None:
    from mcpwall.policy import check_policy

    path = tmp_path / "policy.yaml"
    path.write_text(
        'version: "1"\ntools:\n  apply:\n    arguments:\n      resource: {format: yaml}\n'
        "    rules:\n      - action: deny\n        when:\n"
        '          - {path: args.resource, op: regex, value: "kind: Secret"}\n'
    )
    _, problems = check_policy(path)
    warnings = [p for p in problems if p.severity == "warning"]
    assert len(warnings) == 1 and warnings[0].line == 9  # the condition's line
    assert "declared yaml" in warnings[0].message
