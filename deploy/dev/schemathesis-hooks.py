"""schemathesis hooks of deploy/dev/api-fuzz.sh (loaded through deploy/dev/schemathesis.toml).

One hook, for one kind of false positive of negative_data_rejection. schemathesis makes a
case "negative" by giving a parameter an invalid value, but some invalid values put
nothing on the wire: an empty array or object in a query string or a multipart form is
serialized as no parameter at all, `null` or an empty list item as a blank one. The server
then receives a request without that parameter (or with it blank, which
crates/gateway/openapi.json allows for every query parameter: Rookery reads blank as
absent), answers it as the valid request it is, and schemathesis reports "schema-violating
request accepted".

The hook drops exactly those reports: an accepted negative case whose every mutated
query or multipart parameter is absent or blank in the request as sent. Any mutated
parameter that reached the server with content keeps the failure, as does every other
kind of failure.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import schemathesis
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.core.parameters import ParameterLocation

MULTIPART_NAME = re.compile(rb'Content-Disposition: form-data; name="([^"]*)"')


def _mutated(case):
    """(name, location) of every parameter the case made invalid."""
    meta = case.meta
    data = getattr(meta.phase, "data", None) if meta is not None else None
    if data is None:
        return []
    found = []
    if getattr(data, "parameter", None) is not None:
        found.append((data.parameter, data.parameter_location))
    for mutation in getattr(data, "mutations", ()):
        name = mutation.parameter
        if name is None and mutation.parameter_location == ParameterLocation.BODY and mutation.path:
            name = str(mutation.path[0])  # a property of the body
        found.append((name, mutation.parameter_location))
    return found


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if not isinstance(failure, AcceptedNegativeData):
        return True
    mutated = _mutated(case)
    if not mutated:
        return True
    request = response.request
    query = parse_qs(urlsplit(request.url).query, keep_blank_values=True)
    body = request.body if isinstance(request.body, bytes) else (request.body or "").encode()
    content_type = request.headers.get("Content-Type", "")
    form_fields = set(MULTIPART_NAME.findall(body)) if content_type.startswith("multipart/form-data") else None
    for name, location in mutated:
        if name is None:
            return True
        if location == ParameterLocation.QUERY:
            values = query.get(name, []) + query.get(f"{name}[]", [])
            if any(v.strip() for v in values):
                return True
        elif location == ParameterLocation.BODY and form_fields is not None:
            if name.encode() in form_fields:
                return True
        else:
            return True
    # Every invalid value vanished on the wire: the server saw a valid request.
    return False
