"""The redaction detectors and patterns, on the shapes real servers print."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mcpwall.engine.operators import compile_regex
from mcpwall.engine.redact import DETECTORS, Pattern, Redactor


def _text(text: str, *detectors: str, patterns: tuple[Pattern, ...] = ()) -> tuple[str, dict]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}]}
    found = Redactor(detectors or tuple(DETECTORS), patterns).result(result)
    return result["content"][0]["text"], dict(found)


KUBECONFIG = """apiVersion: v1
kind: Config
users:
- name: admin
  user:
    token: eyJhbGciOiJSUzI1NiJ9.payload.signature
    client-key-data: LS0tLS1CRUdJTg==
- name: basic
  user:
    password: hunter2
    username: admin
- name: oidc
  user:
    auth-provider:
      config:
        id-token: abc.def.ghi
        refresh-token: r1
"""


def test_kubeconfig_credentials_are_redacted_and_the_rest_kept() -> None:
    text, found = _text(KUBECONFIG, "kubeconfig")
    assert found == {"kubeconfig": 5}
    for secret in ("eyJhbGci", "LS0tLS1", "hunter2", "abc.def.ghi", "r1\n"):
        assert secret not in text
    assert "token: [redacted]" in text and "username: admin" in text
    again, found_again = _text(text, "kubeconfig")
    assert again == text and found_again == {}  # already redacted: nothing more to do


def test_kubeconfig_in_json() -> None:
    text, found = _text(json.dumps({"users": [{"user": {"token": "abc", "x": "y"}}]}))
    assert '"token": "[redacted]"' in text and found == {"kubeconfig": 1}


SECRET_LIST = """apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: secret
  metadata:
    name: db
  data:
    password: c2VjcmV0
    nested.key: YQ==
  type: Opaque
- apiVersion: v1
  kind: Secret
  metadata: {name: tls}
  stringData:
    tls.key: |
      not-a-real-key
  type: kubernetes.io/tls
"""


def test_secret_data_in_yaml_lists_lower_case_kind_and_string_data() -> None:
    text, found = _text(SECRET_LIST, "kubernetes_secrets")
    assert "c2VjcmV0" not in text and "YQ==" not in text and "not-a-real-key" not in text
    assert "password: [redacted]" in text and "tls.key: [redacted]" in text
    assert "name: db" in text and "type: Opaque" in text
    assert found["kubernetes_secrets"] >= 3


def test_secret_data_in_json_text_and_structured_content() -> None:
    secret = {"kind": "Secret", "metadata": {"name": "db"}, "data": {"password": "c2VjcmV0"}}
    text, found = _text(json.dumps({"items": [secret]}), "kubernetes_secrets")
    assert "c2VjcmV0" not in text and found == {"kubernetes_secrets": 1}
    result: dict[str, Any] = {"content": [], "structuredContent": {"items": [dict(secret)]}}
    counted = Redactor(("kubernetes_secrets",), ()).result(result)
    assert result["structuredContent"]["items"][0]["data"] == {"password": "[redacted]"}
    assert dict(counted) == {"kubernetes_secrets": 1}


def test_secret_data_in_flow_style() -> None:
    text, found = _text(
        "kind: Secret\ndata: {password: c2VjcmV0}\ntype: Opaque", "kubernetes_secrets"
    )
    assert text == "kind: Secret\ndata: [redacted]\ntype: Opaque" and found == {
        "kubernetes_secrets": 1
    }


def test_a_config_map_alone_is_left_alone() -> None:
    config_map = "kind: ConfigMap\ndata:\n  mode: fast\n"
    assert _text(config_map, "kubernetes_secrets") == (config_map, {})


@pytest.mark.parametrize(
    ("detector", "secret"),
    [
        ("bearer_tokens", "Authorization: Bearer sk-abcdefghijklmnop"),
        (
            "private_keys",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEabc\n-----END RSA PRIVATE KEY-----",
        ),
        ("private_keys", "-----BEGIN PRIVATE KEY-----\nMIIEabc\n-----END PRIVATE KEY-----"),
        ("cloud_keys", "AKIAIOSFODNN7EXAMPLE"),
        ("cloud_keys", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        ("cloud_keys", "ghp_" + "a" * 36),
        ("cloud_keys", "sk_live_" + "b" * 24),
        ("cloud_keys", "xoxb-1234567890-abcdef"),
    ],
)
def test_each_detector_finds_its_kind(detector: str, secret: str) -> None:
    text, found = _text(f"before {secret} after", detector)
    assert found == {detector: 1}
    assert text.startswith("before ") and text.endswith(" after")
    assert secret not in text and "[redacted]" in text


def test_patterns_replace_every_match_and_count_by_name() -> None:
    pattern = Pattern("ticket", compile_regex(r"CORP-[0-9]+"), "CORP-#")
    text, found = _text("CORP-1, CORP-22 and corp-3", patterns=(pattern,))
    assert text == "CORP-#, CORP-# and corp-3"
    assert found == {"ticket": 2}


def test_embedded_resources_are_redacted_too() -> None:
    result: dict[str, Any] = {
        "content": [{"type": "resource", "resource": {"uri": "x", "text": "Bearer abcdefghijk"}}]
    }
    Redactor(("bearer_tokens",), ()).result(result)
    assert result["content"][0]["resource"]["text"] == "Bearer [redacted]"
