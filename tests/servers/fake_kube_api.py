"""A fake Kubernetes API server on loopback for kubernetes-mcp-server to talk to: it
answers discovery for core/v1, apps/v1 and rbac.authorization.k8s.io/v1, accepts every
write, and records each request it receives (method, path, body) as a JSON line in the
file named by its first argument: the proof of what reached the cluster. It prints its
port on stdout once it listens."""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def resource(name: str, kind: str, namespaced: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "singularName": kind.lower(),
        "namespaced": namespaced,
        "kind": kind,
        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
    }


GROUPS = {
    "/api/v1": (
        "v1",
        [
            resource("configmaps", "ConfigMap"),
            resource("secrets", "Secret"),
            resource("namespaces", "Namespace", False),
            resource("pods", "Pod"),
        ],
    ),
    "/apis/apps/v1": ("apps/v1", [resource("deployments", "Deployment")]),
    "/apis/rbac.authorization.k8s.io/v1": (
        "rbac.authorization.k8s.io/v1",
        [
            resource("clusterrolebindings", "ClusterRoleBinding", False),
            resource("rolebindings", "RoleBinding"),
        ],
    ),
}


def group_list() -> dict[str, Any]:
    groups = []
    for path, (version, _) in GROUPS.items():
        if path.startswith("/apis/"):
            name, _, short = version.partition("/")
            entry = {"groupVersion": version, "version": short}
            groups.append({"name": name, "versions": [entry], "preferredVersion": entry})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


class Handler(BaseHTTPRequestHandler):
    record_path = ""

    def log_message(self, *args: Any) -> None:
        return None

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/api":
            self._send(200, {"kind": "APIVersions", "versions": ["v1"]})
        elif path == "/apis":
            self._send(200, group_list())
        elif path in GROUPS:
            version, resources = GROUPS[path]
            self._send(
                200, {"kind": "APIResourceList", "groupVersion": version, "resources": resources}
            )
        else:
            self._record(b"")
            self._send(
                404,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "reason": "NotFound",
                    "code": 404,
                },
            )

    def _write(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self._record(body)
        try:
            echoed = json.loads(body)
        except ValueError:
            echoed = {}
        if not isinstance(echoed, dict):
            echoed = {}
        echoed.setdefault("metadata", {}).setdefault("uid", "fake")
        self._send(200, echoed)

    do_PATCH = do_POST = do_PUT = do_DELETE = _write

    def _record(self, body: bytes) -> None:
        with open(self.record_path, "a", encoding="utf-8") as out:
            entry = {
                "method": self.command,
                "path": self.path.split("?")[0],
                "body": body.decode("utf-8", "replace"),
            }
            out.write(json.dumps(entry) + "\n")


if __name__ == "__main__":
    Handler.record_path = sys.argv[1]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()
