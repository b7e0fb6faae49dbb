"""The policy's JSON Schema, generated from the pydantic model: `python -m guard.policy.schema` writes
docs/policy.schema.json (a test checks the committed file is current)."""

from __future__ import annotations

import json
import pathlib

SCHEMA_PATH = pathlib.Path(__file__).resolve().parents[2] / "docs" / "policy.schema.json"


def schema_text() -> str:
    from guard.policy.model import Policy

    schema = Policy.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "guard safe-merge policy"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    from guard.artifacts.atomic import write_atomically

    write_atomically(SCHEMA_PATH, schema_text())
    print(f"wrote {SCHEMA_PATH}")
