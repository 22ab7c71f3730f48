"""Validates a JSON answer against the schema an OpenAPI 3.1 document gives it.

usage: validate_response.py OPENAPI.json PATH METHOD STATUS BODY.json

Exits 0 when BODY matches the `application/json` schema of that operation's STATUS response,
1 with the errors otherwise. Used by tests/tests/schemathesis.rs for the answers it gets itself
(a label upload, which schemathesis cannot build a workbook for).
"""

import json
import sys

from jsonschema import Draft202012Validator


def main() -> int:
    doc_path, path, method, status, body_path = sys.argv[1:6]
    with open(doc_path, encoding="utf-8") as f:
        doc = json.load(f)
    with open(body_path, encoding="utf-8") as f:
        body = json.load(f)
    response = doc["paths"][path][method.lower()]["responses"][status]
    schema = response["content"]["application/json"]["schema"]
    # The schema's `#/components/...` references resolve against this root.
    root = {"allOf": [schema], "components": doc.get("components", {})}
    errors = sorted(Draft202012Validator(root).iter_errors(body), key=str)
    for e in errors:
        print(f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
