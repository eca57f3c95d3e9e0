#!/usr/bin/env python3
"""Checks AWS IoT CreateJob request bodies against AWS's own service model, offline.

Usage: check-create-job.py REQUEST.json...

Each file is the JSON a `CreateJob` call takes (`aws iot create-job --cli-input-json`), as
`cairn rollout export-aws-jobs` writes it. It is checked with botocore's `iot` service model
(2015-05-28) in two passes:

1. botocore's own `ParamValidator`, what the AWS SDK for Python runs before it sends a request:
   required members, unknown members, types, and each shape's `min`;
2. a walk over the same model for what ParamValidator leaves to the service: each shape's `max`
   (length of a string or list, value of a number), `enum` and `pattern`.

Prints one line per problem, naming the file and the member; exits 1 if any file has one, 2 if
the model cannot be loaded. Uses no network: the model ships inside botocore.
"""

import json
import re
import sys
import unicodedata

try:
    import botocore
    from botocore.loaders import Loader
    from botocore.model import ServiceModel
    from botocore.validate import ParamValidator
except ImportError as e:  # pragma: no cover - the venv lacks botocore
    print(f"botocore is not installed ({e}): run tools/setup", file=sys.stderr)
    sys.exit(2)


def char_ok(pattern, value):
    """Patterns with Java Unicode classes that Python's `re` lacks, checked by hand."""
    if pattern == "[^\\p{C}]+":
        return len(value) > 0 and all(
            not unicodedata.category(c).startswith("C") for c in value
        )
    return None


def walk(shape, value, path, problems):
    meta = shape.metadata
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return
        for name, member in shape.members.items():
            if name in value:
                walk(member, value[name], f"{path}.{name}", problems)
        return
    if kind == "list":
        if not isinstance(value, list):
            return
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: {len(value)} items, more than {meta['max']} ({shape.name})")
        for i, item in enumerate(value):
            walk(shape.member, item, f"{path}[{i}]", problems)
        return
    if kind == "map":
        if not isinstance(value, dict):
            return
        for k, v in value.items():
            walk(shape.key, k, f"{path} key", problems)
            walk(shape.value, v, f"{path}[{k}]", problems)
        return
    if kind == "string":
        if not isinstance(value, str):
            return
        if "max" in meta and len(value) > meta["max"]:
            problems.append(
                f"{path}: {len(value)} characters, more than {meta['max']} ({shape.name})"
            )
        if shape.enum and value not in shape.enum:
            problems.append(f"{path}: {value!r} is not one of {shape.enum} ({shape.name})")
        pattern = meta.get("pattern")
        if pattern:
            ok = char_ok(pattern, value)
            if ok is None:
                if "\\p{" in pattern:
                    problems.append(f"{path}: pattern {pattern!r} cannot be checked here")
                    return
                ok = re.fullmatch(pattern.lstrip("^").rstrip("$"), value) is not None
            if not ok:
                problems.append(
                    f"{path}: {value!r} does not match {pattern!r} ({shape.name})"
                )
        return
    if kind in ("integer", "long", "double", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return
        if "max" in meta and value > meta["max"]:
            problems.append(f"{path}: {value} is above {meta['max']} ({shape.name})")


def main(paths):
    model = ServiceModel(Loader().load_service_model("iot", "service-2"), "iot")
    operation = model.operation_model("CreateJob")
    shape = operation.input_shape
    failed = False
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                body = json.load(f)
        except (OSError, ValueError) as e:
            print(f"{path}: {e}")
            failed = True
            continue
        problems = []
        report = ParamValidator().validate(body, shape)
        if report.has_errors():
            problems.extend(report.generate_report().splitlines())
        walk(shape, body, "CreateJob", problems)
        for p in problems:
            print(f"{path}: {p.strip()}")
        if problems:
            failed = True
        else:
            print(
                f"{path}: ok (CreateJobRequest, botocore {botocore.__version__}, "
                f"iot {model.api_version})"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
