"""schemathesis hooks of deploy/dev/api-fuzz.sh (loaded through deploy/dev/schemathesis.toml).

One hook, for two kinds of false positive of negative_data_rejection. schemathesis makes a
case "negative" by giving a parameter an invalid value, but some invalid values do not
survive serialization:
- an empty array or object in a query string or a multipart form is sent as no
  parameter at all, `null` or an empty list item as a blank one; the server receives a
  request without that parameter (or with it blank, which crates/gateway/openapi.json
  allows for every query parameter: Rookery reads blank as absent);
- a multipart form field is text: a boolean or a number given to a text field arrives as
  the text "false" or "12", a valid value of that field.
The server answers the valid request it received and schemathesis reports
"schema-violating request accepted".

The hook drops exactly those reports: an accepted negative case whose every mutation is
one of the above, judged on the request as sent. Any mutated parameter that reached the
server with content of the wrong kind keeps the failure, as does every other kind of
failure.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jsonschema_rs
import schemathesis
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.core.parameters import ParameterLocation

# The document the gateway serves (compiled in from this file).
DOCUMENT = json.loads((Path(__file__).resolve().parents[2] / "crates/gateway/openapi.json").read_text())
PART = re.compile(rb'Content-Disposition: form-data; name="([^"]*)"[^\r]*\r\n(?:[^\r]+\r\n)*\r\n(.*?)\r\n--', re.S)


def _form_values(body: bytes) -> dict[str, list[bytes]]:
    values: dict[str, list[bytes]] = {}
    for name, value in PART.findall(body):
        values.setdefault(name.decode("utf-8", "replace"), []).append(value)
    return values


def _valid_text(case, name: str, texts: list[bytes]) -> bool:
    """Whether every text sent for form field `name` is valid for it, read as text."""
    try:
        content = DOCUMENT["paths"][case.operation.path][case.method.lower()]["requestBody"]["content"]
        prop = content["multipart/form-data"]["schema"]["properties"][name]
    except KeyError:
        return False
    if prop.get("type") != "string" or prop.get("format") == "binary":
        return False
    validator = jsonschema_rs.validator_for({k: v for k, v in prop.items() if k != "description"})
    try:
        return all(validator.is_valid(t.decode("utf-8")) for t in texts)
    except UnicodeDecodeError:
        return False


def _mutations(case):
    """(name, location, mutation or None) of every parameter the case made invalid."""
    meta = case.meta
    data = getattr(meta.phase, "data", None) if meta is not None else None
    if data is None:
        return []
    mutations = list(getattr(data, "mutations", ()))
    found = []
    for mutation in mutations:
        name = mutation.parameter
        if name is None and mutation.parameter_location == ParameterLocation.BODY and mutation.path:
            name = str(mutation.path[0])  # a property of the body
        found.append((name, mutation.parameter_location, mutation))
    if not mutations and getattr(data, "parameter", None) is not None:
        found.append((data.parameter, data.parameter_location, None))
    return found


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if not isinstance(failure, AcceptedNegativeData):
        return True
    mutated = _mutations(case)
    if not mutated:
        return True
    request = response.request
    query = parse_qs(urlsplit(request.url).query, keep_blank_values=True)
    body = request.body if isinstance(request.body, bytes) else (request.body or "").encode()
    content_type = request.headers.get("Content-Type", "")
    form = _form_values(body) if content_type.startswith("multipart/form-data") else None
    for name, location, _ in mutated:
        if name is None:
            return True
        if location == ParameterLocation.QUERY:
            values = query.get(name, []) + query.get(f"{name}[]", [])
            if any(v.strip() for v in values):
                return True
        elif location == ParameterLocation.BODY and form is not None:
            # Absent, or text that the field takes (the field's schema, applied to the text).
            if name in form and not _valid_text(case, name, form[name]):
                return True
        else:
            return True
    # Every invalid value vanished or became valid on the wire: the server saw a valid request.
    return False
