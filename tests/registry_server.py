"""A stand-in for the Confluent Schema Registry's REST API, for tests only.

No Confluent-compatible registry can be installed on the test machines, so the tests serve
the subset of the REST API that ``confluent_kafka.schema_registry``'s client, serializers and
eventscope use, from memory:

* ``POST /subjects/{subject}/versions`` registers a schema (the same text again is the same ID);
* ``POST /subjects/{subject}`` looks a schema up in a subject;
* ``GET /schemas/ids/{id}`` (``?format=`` is accepted and ignored: a Protobuf schema is kept
  as the serializer sent it, a base64 ``FileDescriptorProto``, which is also what
  ``?format=serialized`` returns from the real registry);
* ``GET /schemas/ids/{id}/versions`` and ``/subjects``;
* ``GET /subjects``, ``GET /subjects/{subject}/versions``, ``GET /subjects/{subject}/versions/{v}``
  (``latest`` too);
* ``GET /config`` and ``/config/{subject}``; ``GET /associations/...`` answers 404 (no
  associations), as a registry without that feature does.

Every request must carry the configured credentials: HTTP basic auth, or a bearer token;
anything else is 401 with the registry's error body. Requests are counted per path
(``requests``), so a test can see that a cached schema is not fetched again. ``down`` makes
every request fail with 503.
"""
from __future__ import annotations

import base64
import json
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryStandIn:
    """The registry's state and the HTTP server serving it on 127.0.0.1 (a free port)."""

    def __init__(self, user: str | None = None, password: str | None = None, token: str | None = None):
        self.user, self.password, self.token = user, password, token
        self.schemas: list[dict] = []  # index = id - 1: {"schema", "schemaType", "references"}
        self.subjects: dict[str, list[int]] = {}  # subject -> schema ID per version (1-based)
        self.requests: Counter = Counter()
        self.down = False
        self.lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                stand_in._serve(self, "GET")

            def do_POST(self):
                stand_in._serve(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- requests --------------------------------------------------------------------------
    def _authorized(self, header: str | None) -> bool:
        if self.token is not None:
            return header == f"Bearer {self.token}"
        if self.user is not None:
            expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            return header == f"Basic {expected}"
        return True

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        path = urlsplit(handler.path).path
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length) or b"null") if length else None
        with self.lock:
            self.requests[f"{method} {path}"] += 1
            if self.down:
                status, answer = 503, {"error_code": 50301, "message": "Service unavailable"}
            elif not self._authorized(handler.headers.get("Authorization")):
                status, answer = 401, {"error_code": 401, "message": "Unauthorized"}
            else:
                status, answer = self._route(method, path, body)
        data = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", CONTENT_TYPE)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _route(self, method: str, path: str, body) -> tuple[int, object]:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if method == "POST" and len(parts) == 3 and parts[0] == "subjects" and parts[2] == "versions":
            return 200, {"id": self.register(parts[1], body)}
        if method == "POST" and len(parts) == 2 and parts[0] == "subjects":
            return self._lookup(parts[1], body)
        if method != "GET":
            return 405, {"error_code": 405, "message": "Method not allowed"}
        if parts[:2] == ["schemas", "ids"] and len(parts) >= 3 and parts[2].isdigit():
            schema_id = int(parts[2])
            if not 0 < schema_id <= len(self.schemas):
                return 404, {"error_code": 40403, "message": f"Schema {schema_id} not found"}
            if len(parts) == 3:
                return 200, self._schema_body(schema_id)
            pairs = [(s, v + 1) for s, ids in self.subjects.items() for v, i in enumerate(ids) if i == schema_id]
            if parts[3] == "versions":
                return 200, [{"subject": s, "version": v} for s, v in pairs]
            if parts[3] == "subjects":
                return 200, sorted({s for s, _ in pairs})
        if parts == ["subjects"]:
            return 200, sorted(self.subjects)
        if len(parts) >= 3 and parts[0] == "subjects" and parts[2] == "versions":
            ids = self.subjects.get(parts[1])
            if not ids:
                return 404, {"error_code": 40401, "message": f"Subject '{parts[1]}' not found."}
            if len(parts) == 3:
                return 200, list(range(1, len(ids) + 1))
            version = len(ids) if parts[3] in ("latest", "-1") else int(parts[3]) if parts[3].isdigit() else 0
            if not 0 < version <= len(ids):
                return 404, {"error_code": 40402, "message": f"Version {parts[3]} not found."}
            return 200, {"subject": parts[1], "version": version, "id": ids[version - 1],
                         **self._schema_body(ids[version - 1])}
        if parts[0] == "config":
            return 200, {"compatibilityLevel": "BACKWARD"}
        if parts[0] == "associations":
            return 404, {"error_code": 404, "message": "Not found"}
        return 404, {"error_code": 404, "message": "HTTP 404 Not Found"}

    def _schema_body(self, schema_id: int) -> dict:
        entry = self.schemas[schema_id - 1]
        out = {"id": schema_id, "schema": entry["schema"]}
        if entry["schemaType"] != "AVRO":
            out["schemaType"] = entry["schemaType"]
        if entry["references"]:
            out["references"] = entry["references"]
        return out

    def _lookup(self, subject: str, body: dict) -> tuple[int, object]:
        for version, schema_id in enumerate(self.subjects.get(subject, []), start=1):
            entry = self.schemas[schema_id - 1]
            if entry["schema"] == body.get("schema"):
                return 200, {"subject": subject, "version": version, **self._schema_body(schema_id)}
        return 404, {"error_code": 40403, "message": "Schema not found"}

    def register(self, subject: str, body: dict) -> int:
        """Register ``body`` (``{"schema", "schemaType"?, "references"?}``) under ``subject``: its ID."""
        entry = {"schema": body["schema"], "schemaType": body.get("schemaType") or "AVRO",
                 "references": body.get("references") or []}
        schema_id = next((i + 1 for i, e in enumerate(self.schemas) if e == entry), None)
        if schema_id is None:
            self.schemas.append(entry)
            schema_id = len(self.schemas)
        ids = self.subjects.setdefault(subject, [])
        if schema_id not in ids:
            ids.append(schema_id)
        return schema_id

    def count(self, pattern: str) -> int:
        """Requests so far whose ``METHOD /path`` matches the regular expression ``pattern``."""
        with self.lock:
            return sum(n for key, n in self.requests.items() if re.search(pattern, key))
