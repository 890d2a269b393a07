#!/usr/bin/env python3
"""A kindsnap --transform filter: scrub e-mail addresses before production
data reaches a laptop, rename a property after a schema change, and leave
out a kind nobody needs locally.

    kindsnap restore latest --to datastore://localhost:8081/dev \
        --transform 'python3 docs/examples/scrub-emails.py'

Protocol: one entity per line on stdin (Datastore v1 JSON, as in
`kindsnap export`); for each, print exactly one line: the entity (same key,
properties changed as you like) or `null` to leave it out. Print in the
order you read; flush when you like (kindsnap streams, so buffering is fine).
"""
import json
import re
import sys

EMAIL = re.compile(r"[^@\s]+@[^@\s]+")

for line in sys.stdin:
    entity = json.loads(line)
    kind = entity["key"]["path"][-1]["kind"]
    if kind == "AuditLog":
        print("null")
        continue
    props = entity.get("properties", {})
    for name, value in props.items():
        text = value.get("stringValue")
        if text is not None and EMAIL.search(text):
            value["stringValue"] = EMAIL.sub("user@example.com", text)
    if "fullname" in props:  # renamed to `name` in the new schema
        props["name"] = props.pop("fullname")
    print(json.dumps(entity, ensure_ascii=False))
