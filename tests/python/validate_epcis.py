#!/usr/bin/env python3
"""Validate EPCIS 2.0 JSON(-LD) documents against the GS1 EPCIS JSON Schema, format checking on.

usage: validate_epcis.py SCHEMA DOCUMENT [DOCUMENT ...]     (DOCUMENT "-" reads stdin)

Exit status: 0 every document is valid; 1 some document is invalid (each error is printed with
its JSON path); 2 the check could not run (bad arguments, unreadable files, or a jsonschema
without the `uri` / `date-time` format checkers, which would make the check vacuous: without
them most validators accept any string where the schema asks for a URI).
"""

import json
import sys

from jsonschema import validators

REQUIRED_FORMATS = ("uri", "date-time")


def load(path):
    if path == "-":
        return json.load(sys.stdin)
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        schema = load(argv[1])
    except (OSError, ValueError) as e:
        print(f"cannot read schema {argv[1]}: {e}", file=sys.stderr)
        return 2
    # The draft the schema declares ($schema: draft-07 for EPCIS 2.0).
    cls = validators.validator_for(schema)
    cls.check_schema(schema)
    checker = cls.FORMAT_CHECKER
    missing = [f for f in REQUIRED_FORMATS if f not in checker.checkers]
    if missing:
        print(
            f"format checkers missing: {missing} (install jsonschema[format-nongpl])",
            file=sys.stderr,
        )
        return 2
    validator = cls(schema, format_checker=checker)
    status = 0
    for path in argv[2:]:
        try:
            doc = load(path)
        except (OSError, ValueError) as e:
            print(f"cannot read {path}: {e}", file=sys.stderr)
            return 2
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        if errors:
            status = 1
            print(f"{path}: INVALID ({len(errors)} errors)")
            for e in errors[:50]:
                where = "/".join(str(p) for p in e.absolute_path) or "(root)"
                print(f"  at {where}: {e.message[:300]}")
        else:
            print(f"{path}: valid")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
