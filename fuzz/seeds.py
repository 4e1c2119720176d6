#!/usr/bin/env python3
"""Writes the fuzz seed corpus (fuzz/corpus/TARGET/) from the test suite's own inputs.

Every request, chunked body, path, response head, JOSE header or claims set and
configuration written as a literal in tests/*.rs, tests/common/*.rs, config/*.toml
and the unit tests of src/http (the codec), src/route, src/auth, src/downstream (the
HTTP/1.1 connection) and src/upstream (the exchange and the response relay) becomes
a seed file named by the SHA-1 of its bytes (so re-running adds new inputs and keeps
old ones). Run it after adding a test input:

    python3 fuzz/seeds.py
"""

import base64
import hashlib
import json
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
SOURCES = (
    sorted((ROOT / "tests").glob("*.rs"))
    + sorted((ROOT / "tests" / "common").glob("*.rs"))
    + sorted((ROOT / "src" / "http").glob("*.rs"))
    + sorted((ROOT / "src" / "route").glob("*.rs"))
    + sorted((ROOT / "src" / "auth").rglob("*.rs"))
    + sorted((ROOT / "src" / "downstream").rglob("*.rs"))
    + sorted((ROOT / "src" / "upstream").rglob("*.rs"))
)
METHODS = ("GET ", "POST ", "PUT ", "HEAD ", "DELETE ", "OPTIONS ", "PATCH ", "CONNECT ")

# A Rust string or byte-string literal, plain or raw (r"..", r#".."#, br#".."#).
LITERAL = re.compile(
    r'b?r(?P<hashes>#*)"(?P<raw>.*?)"(?P=hashes)|b?"(?P<plain>(?:[^"\\]|\\.|\\\n)*)"',
    re.S,
)


def unescape(text):
    """The bytes of a non-raw Rust literal's body."""
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        n = text[i + 1]
        i += 2
        if n == "\n":
            while i < len(text) and text[i] in " \t\n":
                i += 1
        elif n in "nrt0\\\"'":
            out += {"n": b"\n", "r": b"\r", "t": b"\t", "0": b"\0", "\\": b"\\", '"': b'"', "'": b"'"}[n]
        elif n == "x":
            out.append(int(text[i : i + 2], 16))
            i += 2
        elif n == "u":
            end = text.index("}", i)
            out += chr(int(text[i + 1 : end], 16)).encode()
            i = end + 1
        else:
            out += ("\\" + n).encode()
    return bytes(out)


def literals():
    for path in SOURCES:
        text = path.read_text()
        for m in LITERAL.finditer(text):
            if m.group("raw") is not None:
                yield path, m.group("raw").encode()
            else:
                try:
                    yield path, unescape(m.group("plain"))
                except (ValueError, IndexError):
                    continue


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def main():
    seeds = {name: set() for name in ("request_head", "chunked", "path", "response_head", "jose", "config")}
    paths = set()
    for path, lit in literals():
        text = lit.decode("utf-8", "replace")
        if text.startswith(METHODS) and "HTTP/" in text and "{" not in text:
            seeds["request_head"].add(lit)
            body = lit.split(b"\r\n\r\n", 1)
            if len(body) == 2 and body[1]:
                seeds["chunked"].add(body[1])
        elif text.startswith("HTTP/1.") and "\r\n" in text:
            seeds["response_head"].add(lit)
            body = lit.split(b"\r\n\r\n", 1)
            if len(body) == 2 and body[1]:
                seeds["chunked"].add(body[1])
        elif re.match(r"^[0-9a-fA-F+ \-;]", text) and "\r\n" in text or text.startswith(("z\r", "\r\n", " 5", "+5", "0x")):
            seeds["chunked"].add(lit)
        elif text.startswith("/") and "\n" not in text and len(text) < 512:
            paths.add(lit)
        elif text.lstrip().startswith("{") and '"' in text and "{{" not in text:
            try:
                value = json.loads(text)
            except ValueError:
                value = None
            if isinstance(value, dict) and "alg" in value or "alg" in text:
                seeds["jose"].add(b64(lit) + b"." + b64(b'{"sub":"a","exp":1}') + b".c2ln")
            else:
                seeds["jose"].add(b64(b'{"alg":"HS256"}') + b"." + b64(lit) + b".c2ln")
        if "[[route]]" in text or "[server]" in text or "[auth.jwt" in text:
            config = re.sub(rb"\{\{", b"{", re.sub(rb"\}\}", b"}", lit))
            config = re.sub(rb"\{[a-z_0-9]*\}", b"18080", config)
            seeds["config"].add(config)
    for p in sorted(paths):
        seeds["path"].add(p)
        seeds["request_head"].add(b"GET " + p + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    for conf in sorted((ROOT / "config").glob("*.toml")):
        seeds["config"].add(conf.read_bytes())
    # The chunked target reads a control byte first: response and request
    # direction, read sizes 1 and 6.
    seeds["chunked"] = {c + body for body in seeds["chunked"] for c in (b"\x00", b"\x85")}
    total = 0
    for name, items in seeds.items():
        folder = CORPUS / name
        folder.mkdir(parents=True, exist_ok=True)
        for item in items:
            (folder / hashlib.sha1(item).hexdigest()).write_bytes(item)
        total += len(items)
        print(f"{name}: {len(items)} seeds")
    print(f"{total} seeds in {CORPUS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
