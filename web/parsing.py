"""How requests are read: one parser for every blueprint's bodies, query strings and headers.

Python's `json` module and marshmallow accept input that the rest of the stack cannot handle, and
each of those became a 500. Here they are refused before any view runs (SPEC §5):

- not JSON at all -> 400: `NaN`/`Infinity` (a Python extension, not JSON), an object with the
  same key twice (RFC 8259 leaves its meaning open; I-JSON, RFC 7493, forbids it), arrays or
  objects nested deeper than MAX_DEPTH (Python's parser would raise RecursionError);
- JSON whose values cannot be stored or echoed -> 422 naming the field: a string with a lone
  surrogate (`"\\ud800"` is valid JSON but not encodable as UTF-8, so PostgreSQL, the log and
  the response cannot take it) or a NUL character (PostgreSQL refuses it in text), an integer of
  more than MAX_DIGITS digits (Python refuses to convert more than 4,300; no field takes more
  than 19) — wherever they are in the document, known field or not;
- an integer query parameter must be ASCII digits (`int()` also takes "²"-like digits of
  other scripts, "1_000" and spaces), and so must an `<int:...>` segment of a URL (werkzeug's
  converter matches `\\d`, which is any script's digits: `/admin/task-failures/١/retry` was
  failure 1).

Every blueprint is a `web.parsing.Blueprint` so that its `arguments` and `paginate` use this
parser; tests/integration/test_hostile_input.py checks that none is left out.
"""
import json
import re
from decimal import Decimal

import flask_smorest
from marshmallow import ValidationError, fields
from webargs import core
from webargs.flaskparser import FlaskParser, abort, is_json_request
from werkzeug.routing import IntegerConverter

from web.fields import unstorable_reason

MAX_DEPTH = 32
MAX_DIGITS = 100  # of an integer in a body; Range validators then say what the field takes
_QUERY_INTEGER = re.compile(r"-?[0-9]{1,18}")  # ASCII only; at most 18 digits fits in a bigint


class InvalidJSON(ValueError):
    """The body is not JSON as the API reads it (answered 400)."""


class _OversizedInteger(Decimal):
    """An integer literal too long to convert; kept only to name its field in the 422."""


def parse_json_body(raw: bytes):
    """The body as JSON, strictly; raises InvalidJSON (400) or ValidationError (422)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidJSON(f"it is not UTF-8 (byte {error.start})") from None
    try:
        document = json.loads(text, parse_int=_parse_int, parse_constant=_refuse_constant,
                              object_pairs_hook=_object_without_duplicates)
    except RecursionError:
        raise InvalidJSON(f"it is nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as error:
        raise InvalidJSON(f"{error.msg} at line {error.lineno} column {error.colno}") from None
    problems = _problems(document)
    if problems:
        raise ValidationError(problems)
    return document


def _parse_int(literal: str) -> int | Decimal:
    return int(literal) if len(literal) <= MAX_DIGITS else _OversizedInteger(literal)


def _refuse_constant(name: str):
    raise InvalidJSON(f"{name} is not a JSON value")


def _object_without_duplicates(pairs: list) -> dict:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise InvalidJSON(f"the key {ascii(duplicate)[:60]} appears twice in one object")
    return document


def _problems(document) -> dict:
    """{field path: [reason]} for every value that cannot be stored; walked without recursion."""
    problems: dict = {}
    stack = [(document, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidJSON(f"it is nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                reason = unstorable_reason(key)
                if reason:
                    problems.setdefault(path or "_schema", []).append(f"a field name {reason}")
                    continue
                stack.append((item, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{path}.{index}" if path else str(index), depth + 1)
                         for index, item in enumerate(value))
        elif isinstance(value, str):
            reason = unstorable_reason(value)
            if reason:
                problems.setdefault(path or "_schema", []).append(reason)
        elif isinstance(value, _OversizedInteger):
            problems.setdefault(path or "_schema", []).append(f"Number too large (more than {MAX_DIGITS} digits).")
    return problems


_PARSED = "boxoffice.parsed_json"  # the request's body, once parsed (a view may read it early)


def request_json(req):
    """The request's JSON body, parsed once per request (parse_json_body); core.missing if it is
    not JSON or empty. Raises as parse_json_body does."""
    if _PARSED in req.environ:
        return req.environ[_PARSED]
    if not is_json_request(req):
        return core.missing
    raw = req.get_data(cache=True)
    # as webargs does: an empty body is "no fields"
    document = req.environ[_PARSED] = parse_json_body(raw) if raw else core.missing
    return document


class RequestParser(FlaskParser):
    def _raw_load_json(self, req):
        try:
            return request_json(req)
        except InvalidJSON as error:
            abort(400, message=f"the request body is not valid JSON: {error}",
                  messages={"json": ["Invalid JSON body."]})

    def load_querystring(self, req, schema):
        bad = {name: ["Not a valid integer."] for name, field in schema.fields.items()
               if isinstance(field, fields.Integer)
               for value in req.args.getlist(field.data_key or name)
               if not _QUERY_INTEGER.fullmatch(value)}
        if bad:
            raise ValidationError(bad)
        return super().load_querystring(req, schema)


parser = RequestParser()


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint reading its arguments and pagination with RequestParser."""

    ARGUMENTS_PARSER = parser
    PAGINATION_ARGUMENTS_PARSER = parser


class AsciiIntegerConverter(IntegerConverter):
    """`<int:...>` in URL rules: ASCII digits only (create_app installs it before any rule)."""

    regex = r"[0-9]+"
