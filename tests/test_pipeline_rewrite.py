"""The rewrite stages: replace (redaction presets), set, move, copy, remove, retain, flatten."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.provisional import domains

from shipper.model import FileId, Stream, Ticket
from shipper.pipeline import config as cfg
from shipper.pipeline.record import Env, Record, RecordStage, StreamInfo
from shipper.pipeline.rewrite import (
    CopySpec,
    FlattenSpec,
    MoveSpec,
    RemoveSpec,
    ReplaceSpec,
    RetainSpec,
    SetSpec,
)


def run(stage: RecordStage, line: str, fields: dict[str, str] | None = None
        ) -> tuple[str, dict[str, str] | None]:
    record, env = Record(7, line, Ticket(FileId(1, 1), 0), fields), Env(0.0, 0)
    assert stage.apply(record, env) is True and record.ts == 7
    assert env.failed == {} and env.dropped == {}
    return record.line, record.fields


def redact(preset: str, line: str) -> str:
    return run(ReplaceSpec(cfg.ReplaceConfig(preset=preset)), line)[0]


# -- replace ---------------------------------------------------------------------------------

def test_replace_regex_with_group_references_in_the_line() -> None:
    spec = ReplaceSpec(cfg.ReplaceConfig(regex=r"user=(\w)\w*(?P<tail>\s|$)",
                                     replacement=r"user=\1***\g<tail>"))
    assert run(spec, "login user=annabel ok user=bo") == ("login user=a*** ok user=b***", None)


def test_replace_in_a_field_leaves_the_line_and_a_missing_field_alone() -> None:
    spec = ReplaceSpec(cfg.ReplaceConfig(preset="email", field="to"))
    assert run(spec, "to ann@example.com", {"to": "ann@example.com", "n": "1"}) == \
        ("to ann@example.com", {"to": "<redacted>", "n": "1"})
    assert run(spec, "to ann@example.com") == ("to ann@example.com", None)


def test_a_presets_replacement_is_literal_text() -> None:
    spec = ReplaceSpec(cfg.ReplaceConfig(preset="email", replacement=r"\1 \g<0> [email]"))
    assert run(spec, "from a@b.io")[0] == r"from \1 \g<0> [email]"


@pytest.mark.parametrize(("line", "redacted"), [
    ("sent to ann.lee+tag@mail.example.co.uk.", "sent to <redacted>."),
    ('{"email":"Bob_99@Example.ORG","id":1}', '{"email":"<redacted>","id":1}'),
    ("from a@b.xn--p1ai and c@d.io", "from <redacted> and <redacted>"),
    ("login email=*ann~1@x.io user=a", "login email=<redacted> user=a"),
    ("no address here, just @mentions and user@localhost", None),
])
def test_email_preset(line: str, redacted: str | None) -> None:
    assert redact("email", line) == (redacted or line)


@pytest.mark.parametrize(("line", "redacted"), [
    ("paid 4111 1111 1111 1111 ok", "paid <redacted> ok"),  # Visa, spaced
    ("card=5500-0000-0000-0004;", "card=<redacted>;"),  # Mastercard, dashed
    ("amex 378282246310005.", "amex <redacted>."),  # 15 digits
    ("visa13:4222222222222", "visa13:<redacted>"),  # the shortest
    ("diners 3056 930902 5904", "diners <redacted>"),  # 4-6-4
    ("19 digits 6011000990139424124 end", "19 digits <redacted> end"),
    ("qty 1 4111 1111 1111 1111", "qty <redacted>"),  # beside another group: the run goes
    ("exp 4111-1111-1111-1111-2025", "exp <redacted>"),
    ("ref 12  4111 1111 1111 1111 -", "ref 12  <redacted> -"),  # two spaces part runs
    ("order 4111111111111112 shipped", None),  # 16 digits that fail the Luhn check
    ("at 20240501123456789 took 1234567 ms", None),  # a timestamp, 17 digits: fails Luhn
    ("trace 41111111111111111111111 id", None),  # 23 digits with no groups: an id
    ("id 41111111111111111115", None),  # 20 digits passing Luhn: longer than any card
    ("call +1 555 123 4567 or 2024-05-01 12:00", None),  # too few digits
])
def test_card_preset_redacts_luhn_valid_numbers_only(line: str, redacted: str | None) -> None:
    assert redact("card", line) == (redacted or line)


@pytest.mark.parametrize(("line", "redacted"), [
    ("Authorization: Bearer abc.DEF-123_x~+/== next", "Authorization: Bearer <redacted> next"),
    ('headers={"authorization":"bearer eyJhbGciOi.x.y"}',
     'headers={"authorization":"bearer <redacted>"}'),
    ("GET /cb?code=1&access_token=ya29.a0Af&api_key=k-123&page=2",
     "GET /cb?code=1&access_token=<redacted>&api_key=<redacted>&page=2"),
    ('{"password": "hunter2", "user": "ann"}', '{"password": "<redacted>", "user": "ann"}'),
    ("db passwd=s3cr3t host=x", "db passwd=<redacted> host=x"),
    ("AWS_SECRET_ACCESS_KEY: wJalrXUtnFEMI/K7MDENG", "AWS_SECRET_ACCESS_KEY: <redacted>"),
    ("X-Api-Key: 0123abcd", "X-Api-Key: <redacted>"),
    ("client_secret='abc'", "client_secret='<redacted>'"),
    ("Bearer token expired for ann", None),  # "token" is too short to be one
    ("tokens=5 keys=3 secrets managed by vault", None),  # a key then no value
])
def test_bearer_preset_keeps_the_key_and_redacts_the_value(line: str,
                                                           redacted: str | None) -> None:
    assert redact("bearer", line) == (redacted or line)


def test_jwt_preset() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert redact("jwt", f"cookie session={jwt}; Path=/") == "cookie session=<redacted>; Path=/"
    assert redact("jwt", "eyJ alone is not a token: a.b.c") == "eyJ alone is not a token: a.b.c"


context = st.text(string.ascii_letters + " ,;:()<>[]'\"=", max_size=20)


@given(context, st.emails(), context)
def test_nothing_the_email_preset_matches_survives_it(before: str, email: str,
                                                      after: str) -> None:
    out = redact("email", f"{before} {email} {after}")
    assert redact("email", out) == out  # any address RFC 5322 allows: none left to match


@given(context, st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._%+-]{0,20}", fullmatch=True),
       domains(), context)
def test_no_ordinary_email_survives(before: str, local: str, domain: str, after: str) -> None:
    email = f"{local}@{domain}"
    out = redact("email", f"{before} {email} {after}")
    assert email not in out and "@" not in out


def luhn_complete(body: str) -> str:
    """`body` and the check digit that makes it pass the Luhn check."""
    total = 0
    for i, digit in enumerate(map(int, reversed(body))):
        total += (digit * 2 - 9 if digit > 4 else digit * 2) if i % 2 == 0 else digit
    return body + str(-total % 10)


card_bodies = st.text("0123456789", min_size=12, max_size=18)
words = st.text(string.ascii_letters + " .,:;=()", max_size=15)


@given(card_bodies, st.lists(st.integers(1, 6), min_size=19, max_size=19),
       st.lists(st.sampled_from(["", " ", "-"]), min_size=19, max_size=19), words, words)
def test_no_luhn_valid_card_survives_the_card_preset(body: str, sizes: list[int],
                                                     seps: list[str], before: str,
                                                     after: str) -> None:
    digits = luhn_complete(body)
    groups, rest = [], digits
    for size in sizes:  # written in groups of any size, apart or not
        if rest:
            groups.append(rest[:size])
            rest = rest[size:]
    card = groups[0] + "".join(sep + group for sep, group in zip(seps, groups[1:],
                                                                  strict=False))
    out = redact("card", f"{before} {card} {after}")
    assert digits not in re.sub(r"\D", "", out) and "<redacted>" in out


@given(card_bodies, st.integers(1, 9), words, words)
def test_a_number_failing_luhn_is_kept(body: str, off: int, before: str, after: str) -> None:
    valid = luhn_complete(body)
    number = valid[:-1] + str((int(valid[-1]) + off) % 10)
    line = f"{before} {number} {after}"
    assert redact("card", line) == line


b64url = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=40)


@given(b64url, b64url, b64url | st.just(""), words)
def test_no_jwt_survives_the_jwt_preset(header: str, payload: str, sig: str,
                                        rest: str) -> None:
    token = f"eyJ{header}.{payload}.{sig}"
    out = redact("jwt", f"token {token} {rest}")
    assert out == f"token <redacted> {rest}"


@given(st.text(string.ascii_letters + string.digits + "-._~+/", min_size=8, max_size=40),
       st.sampled_from(["token", "api_key", "apikey", "api-key", "secret", "password",
                        "Passwd", "access_key", "ACCESS_TOKEN", "private_key"]),
       st.text(string.ascii_letters + string.digits + "-._~+/=!@#$%^*()", min_size=1,
               max_size=30))
def test_no_bearer_token_or_keyed_secret_survives(token: str, key: str, value: str) -> None:
    assert redact("bearer", f"auth: Bearer {token} done") == "auth: Bearer <redacted> done"
    for written, redacted in ((f"{key}={value}", f"{key}=<redacted>"),
                              (f'"{key}": "{value}"', f'"{key}": "<redacted>"'),
                              (f"{key}: {value}", f"{key}: <redacted>")):
        assert redact("bearer", f"x {written} y") == f"x {redacted} y"


# -- field operators -------------------------------------------------------------------------

def test_set_adds_and_replaces_constant_fields_without_sharing_them() -> None:
    spec = SetSpec(cfg.SetConfig(fields=(("env", "prod"), ("team", "core"))))
    assert run(spec, "l", {"env": "dev", "a": "1"}) == \
        ("l", {"env": "prod", "a": "1", "team": "core"})
    _, first = run(spec, "l")
    _, second = run(spec, "l")
    assert first == second == {"env": "prod", "team": "core"} and first is not second


@pytest.mark.parametrize(("from_", "to", "line", "fields", "expected"), [
    ("msg", "message", "l", {"msg": "m", "message": "old"}, ("l", {"message": "m"})),
    ("line", "original", "raw", {"a": "1"}, ("", {"a": "1", "original": "raw"})),
    ("msg", "line", "raw", {"msg": "m"}, ("m", None)),  # no field left: None, as at the start
    ("line", "line", "raw", None, ("raw", None)),
    ("msg", "msg", "l", {"msg": "m"}, ("l", {"msg": "m"})),
    ("absent", "x", "l", {"a": "1"}, ("l", {"a": "1"})),  # missing: nothing happens
])
def test_move(from_: str, to: str, line: str, fields: dict[str, str] | None,
              expected: tuple[str, dict[str, str] | None]) -> None:
    assert run(MoveSpec(cfg.MoveConfig(from_=from_, to=to)), line, fields) == expected


@pytest.mark.parametrize(("from_", "to", "line", "fields", "expected"), [
    ("msg", "message", "l", {"msg": "m", "message": "old"}, ("l", {"msg": "m", "message": "m"})),
    ("line", "original", "raw", None, ("raw", {"original": "raw"})),
    ("msg", "line", "raw", {"msg": "m"}, ("m", {"msg": "m"})),
    ("absent", "line", "l", {"a": "1"}, ("l", {"a": "1"})),
])
def test_copy(from_: str, to: str, line: str, fields: dict[str, str] | None,
              expected: tuple[str, dict[str, str] | None]) -> None:
    assert run(CopySpec(cfg.CopyConfig(from_=from_, to=to)), line, fields) == expected


def test_remove() -> None:
    spec = RemoveSpec(cfg.FieldListConfig(fields=("a", "absent", "line")))
    assert run(spec, "l", {"a": "1", "b": "2", "line": "x"}) == ("l", {"b": "2"})
    assert run(spec, "l", {"a": "1"}) == ("l", None)
    assert run(spec, "l") == ("l", None)


def test_retain() -> None:
    spec = RetainSpec(cfg.FieldListConfig(fields=("level", "absent", "trace_id")))
    assert run(spec, "l", {"trace_id": "t", "a": "1", "level": "info"}) == \
        ("l", {"level": "info", "trace_id": "t"})
    assert run(spec, "l", {"a": "1"}) == ("l", None)
    assert run(spec, "l") == ("l", None)


@pytest.mark.parametrize(("field", "fields", "expected"), [
    ("user", {"user.id": "7", "user.name.first": "Ann", "user": "s", "id": "old", "x": "1"},
     {"user": "s", "x": "1", "id": "7", "name.first": "Ann"}),  # up one level, replacing id
    ("a.x", {"a.x.y": "1", "a.z": "2", "a.xy": "3"}, {"a.z": "2", "a.xy": "3", "a.y": "1"}),
    ("user", {"username": "ann"}, {"username": "ann"}),
    ("user", None, None),
])
def test_flatten_moves_children_up_one_level(field: str, fields: dict[str, str] | None,
                                             expected: dict[str, str] | None) -> None:
    assert run(FlattenSpec(cfg.FlattenConfig(field=field)), "l", fields) == ("l", expected)


@pytest.mark.parametrize("spec", [
    ReplaceSpec(cfg.ReplaceConfig(preset="card")), SetSpec(cfg.SetConfig(fields=(("a", "b"),))),
    MoveSpec(cfg.MoveConfig(from_="a", to="b")), CopySpec(cfg.CopyConfig(from_="a", to="b")),
    RemoveSpec(cfg.FieldListConfig(fields=("a",))), RetainSpec(cfg.FieldListConfig(fields=("a",))),
    FlattenSpec(cfg.FlattenConfig(field="a"))])
def test_one_stage_serves_every_stream(spec: ReplaceSpec) -> None:
    info = StreamInfo(Stream('{app="api"}', (("app", "api"),)), "stdout")
    assert spec.build(info) is spec
