"""Declarative configuration of the HTTP vendor sinks: one ``[[vendors]]`` table per store.

Each vendor (sub-processor) gets one REST call per deletion command: ``method`` on
``base_url`` + ``path`` with ``{category}`` and ``{record_key}`` filled in (URL-quoted). Which
answers mean what, how often to retry and when to stop calling are per-vendor settings, with
defaults in an optional ``[defaults]`` table. See docs/stores-and-sinks.md, "HTTP vendor sink".

Base URLs can be overridden from the environment, most specific first:

- ``EBBTIDE_VENDOR_<STORE>_URL`` (store id upper-cased), the vendor's base URL;
- ``EBBTIDE_VENDOR_URL``: one base for every vendor, each under its store id
  (``$EBBTIDE_VENDOR_URL/<store>``), e.g. one local stand-in for all of them.
"""

from __future__ import annotations

import os
import re
import string
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from ebbtide.sinks.base.errors import SinkConfigError

DEFAULT_VENDORS = Path(__file__).with_name("vendors.toml")
URL_ENV = "EBBTIDE_VENDOR_URL"
METHODS = ("DELETE", "POST", "PUT", "PATCH")
_STORE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")  # an RFC 9110 token
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_PLACEHOLDERS = frozenset({"category", "record_key"})
Fail = Callable[[str, str], "VendorConfigError"]

# Tunables a [defaults] table may set for every vendor, with their built-in defaults.
TUNABLES: dict[str, Any] = {
    "method": "DELETE",
    "timeout": 10.0,
    "deleted_statuses": [200, 202, 204],
    "not_found_statuses": [404, 410],
    "retry_statuses": [408, 425, 429, 500, 502, 503, 504],
    "max_attempts": 5,
    "backoff_base": 0.5,
    "backoff_max": 30.0,
    "breaker_threshold": 3,
    "breaker_open_seconds": 30.0,
}
_PER_VENDOR = (
    "store",
    "name",
    "base_url",
    "path",
    "paths",
    "categories",
    "auth_header",
    "auth_env",
    "auth_scheme",
)


class VendorConfigError(SinkConfigError):
    """A vendor configuration that cannot be used as written; the message names file, vendor and field."""


@dataclass(frozen=True)
class Vendor:
    store: str
    name: str
    base_url: str
    path: str
    method: str = "DELETE"
    paths: Mapping[str, str] = field(default_factory=dict)  # category -> path template, overrides `path`
    categories: tuple[str, ...] | None = None  # the only categories the vendor holds (None: any)
    auth_header: str | None = None
    auth_env: str | None = None  # environment variable holding the token (never logged)
    auth_scheme: str | None = None  # e.g. "Bearer": the header is "<scheme> <token>"
    timeout: float = 10.0
    deleted_statuses: frozenset[int] = frozenset({200, 202, 204})
    not_found_statuses: frozenset[int] = frozenset({404, 410})
    retry_statuses: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504})
    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    breaker_threshold: int = 3
    breaker_open_seconds: float = 30.0
    source: str = "<inline>"  # where the config came from, for error messages

    def url(self, category: str, record_key: str) -> str:
        template = self.paths.get(category, self.path)
        path = template.format(category=quote(category, safe=""), record_key=quote(record_key, safe=""))
        return self.base_url.rstrip("/") + path

    def holds(self, category: str) -> bool:
        return self.categories is None or category in self.categories

    def auth_headers(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """The authentication header, with the token read from ``auth_env`` now."""
        if self.auth_header is None or self.auth_env is None:
            return {}
        env = os.environ if environ is None else environ
        token = env.get(self.auth_env, "")
        if not token:
            raise VendorConfigError(
                f"{self.source}: vendor {self.store}: auth_env: environment variable {self.auth_env} "
                "is not set (it holds the vendor's API token)"
            )
        return {self.auth_header: f"{self.auth_scheme} {token}" if self.auth_scheme else token}


def load_vendors(path: Path = DEFAULT_VENDORS, environ: Mapping[str, str] | None = None) -> dict[str, Vendor]:
    """Every vendor of a vendors TOML file, by store id, with environment URL overrides applied."""
    env = os.environ if environ is None else environ
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise VendorConfigError(f"{path}: {exc}") from None
    unknown = set(doc) - {"defaults", "vendors"}
    if unknown:
        raise VendorConfigError(f"{path}: unknown top-level key(s) {sorted(unknown)}")
    defaults = doc.get("defaults", {})
    if not isinstance(defaults, dict):
        raise VendorConfigError(f"{path}: defaults must be a table")
    bad = set(defaults) - set(TUNABLES)
    if bad:
        raise VendorConfigError(
            f"{path}: defaults: unknown field(s) {sorted(bad)}; known: {sorted(TUNABLES)}"
        )
    entries = doc.get("vendors", [])
    if not isinstance(entries, list) or not entries:
        raise VendorConfigError(f"{path}: no [[vendors]]")
    vendors: dict[str, Vendor] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise VendorConfigError(f"{path}: vendors[{index}] must be a table")
        vendor = _vendor(path, index, {**TUNABLES, **defaults, **entry}, env)
        if vendor.store in vendors:
            raise VendorConfigError(f"{path}: vendor {vendor.store}: store: configured twice")
        vendors[vendor.store] = vendor
    return vendors


def _vendor(path: Path, index: int, raw: dict[str, Any], env: Mapping[str, str]) -> Vendor:
    store = raw.get("store")
    if not isinstance(store, str) or not _STORE.match(store):
        raise VendorConfigError(
            f"{path}: vendors[{index}]: store: must be a lower-case store id, got {store!r}"
        )
    where = f"{path}: vendor {store}"

    def fail(name: str, problem: str) -> VendorConfigError:
        return VendorConfigError(f"{where}: {name}: {problem}")

    unknown = set(raw) - set(TUNABLES) - set(_PER_VENDOR)
    if unknown:
        raise fail(sorted(unknown)[0], f"unknown field; known: {sorted({*TUNABLES, *_PER_VENDOR})}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise fail("name", "must be a non-empty string")
    base_url = _base_url(store, raw.get("base_url"), env, fail)
    method = raw["method"]
    if method not in METHODS:
        raise fail("method", f"must be one of {', '.join(METHODS)}, got {method!r}")
    template = _template("path", raw.get("path"), fail)
    paths, categories = _categories(raw, fail)
    auth_header, auth_env, auth_scheme = _auth(raw, fail)
    deleted, not_found, retry = _answers(raw, fail)
    backoff_base = _number("backoff_base", raw["backoff_base"], fail, minimum=0.0)
    backoff_max = _number("backoff_max", raw["backoff_max"], fail, minimum=0.0)
    if backoff_max < backoff_base:
        raise fail("backoff_max", f"must be >= backoff_base ({backoff_base:g})")
    return Vendor(
        store=store,
        name=name,
        base_url=base_url,
        path=template,
        method=method,
        paths=paths,
        categories=categories,
        auth_header=auth_header,
        auth_env=auth_env,
        auth_scheme=auth_scheme,
        timeout=_number("timeout", raw["timeout"], fail, minimum=0.001),
        deleted_statuses=deleted,
        not_found_statuses=not_found,
        retry_statuses=retry,
        max_attempts=_whole("max_attempts", raw["max_attempts"], fail),
        backoff_base=backoff_base,
        backoff_max=backoff_max,
        breaker_threshold=_whole("breaker_threshold", raw["breaker_threshold"], fail),
        breaker_open_seconds=_number("breaker_open_seconds", raw["breaker_open_seconds"], fail, minimum=0.0),
        source=str(path),
    )


def _categories(raw: dict[str, Any], fail: Fail) -> tuple[dict[str, str], tuple[str, ...] | None]:
    """The per-category path templates, and the only categories the vendor holds (None: any);
    a path's category must be one of them."""
    paths_raw = raw.get("paths", {})
    if not isinstance(paths_raw, dict):
        raise fail("paths", "must be a table of category = path template")
    paths = {str(k): _template(f"paths.{k}", v, fail) for k, v in paths_raw.items()}
    categories_raw = raw.get("categories")
    categories: tuple[str, ...] | None = None
    if categories_raw is not None:
        if not isinstance(categories_raw, list) or not all(isinstance(c, str) and c for c in categories_raw):
            raise fail("categories", "must be a list of category names")
        categories = tuple(categories_raw)
        stray = sorted(set(paths) - set(categories))
        if stray:
            raise fail("paths", f"category {stray[0]!r} is not in categories")
    return paths, categories


def _auth(raw: dict[str, Any], fail: Fail) -> tuple[str | None, str | None, str | None]:
    """``auth_header``, ``auth_env`` and ``auth_scheme``: all absent, or a header name with the
    environment variable holding its token (and a scheme, optionally)."""
    auth_header, auth_env, auth_scheme = raw.get("auth_header"), raw.get("auth_env"), raw.get("auth_scheme")
    if (auth_header is None) != (auth_env is None):
        raise fail(
            "auth_header" if auth_header is None else "auth_env", "auth_header and auth_env go together"
        )
    if auth_header is not None and (not isinstance(auth_header, str) or not _HEADER.match(auth_header)):
        raise fail("auth_header", f"not an HTTP header name: {auth_header!r}")
    if auth_env is not None and (not isinstance(auth_env, str) or not _ENV_NAME.match(auth_env)):
        raise fail("auth_env", f"must be the NAME of an environment variable (upper case), got {auth_env!r}")
    if auth_scheme is not None and (
        auth_header is None or not isinstance(auth_scheme, str) or not auth_scheme
    ):
        raise fail("auth_scheme", "must be a non-empty string, with auth_header")
    return auth_header, auth_env, auth_scheme


def _answers(raw: dict[str, Any], fail: Fail) -> tuple[frozenset[int], frozenset[int], frozenset[int]]:
    """The deleted, not-found and retry statuses: three sets with no status in two of them."""
    deleted = _statuses("deleted_statuses", raw["deleted_statuses"], fail)
    not_found = _statuses("not_found_statuses", raw["not_found_statuses"], fail)
    retry = _statuses("retry_statuses", raw["retry_statuses"], fail)
    for (a, sa), (b, sb) in (
        (("deleted_statuses", deleted), ("not_found_statuses", not_found)),
        (("deleted_statuses", deleted), ("retry_statuses", retry)),
        (("not_found_statuses", not_found), ("retry_statuses", retry)),
    ):
        both = sorted(sa & sb)
        if both:
            raise fail(b, f"status {both[0]} is also in {a}")
    if not deleted:
        raise fail("deleted_statuses", "must list at least one status")
    return deleted, not_found, retry


def _base_url(store: str, configured: object, env: Mapping[str, str], fail: Fail) -> str:
    specific = f"EBBTIDE_VENDOR_{store.upper()}_URL"
    url: object
    if env.get(specific):
        url, origin = env[specific], f"base_url (from {specific})"
    elif env.get(URL_ENV):
        url, origin = f"{env[URL_ENV].rstrip('/')}/{store}", f"base_url (from {URL_ENV})"
    else:
        url, origin = configured, "base_url"
    if not isinstance(url, str):
        raise fail("base_url", f"missing (or set {specific} or {URL_ENV})")
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        raise fail(origin, f"bad port in {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise fail(origin, f"must be an http:// or https:// URL without query, got {url!r}")
    return url


def _template(name: str, value: object, fail: Fail) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise fail(name, f"must be a path template starting with '/', got {value!r}")
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
    except ValueError as exc:
        raise fail(name, f"bad template {value!r}: {exc}") from None
    if not fields <= _PLACEHOLDERS:
        raise fail(
            name, f"unknown placeholder(s) {sorted(fields - _PLACEHOLDERS)}; use {{category}}, {{record_key}}"
        )
    if "record_key" not in fields:
        raise fail(name, f"must contain {{record_key}}, got {value!r}")
    return value


def _statuses(name: str, value: object, fail: Fail) -> frozenset[int]:
    if not isinstance(value, list) or not all(type(s) is int and 100 <= s <= 599 for s in value):
        raise fail(name, f"must be a list of HTTP status codes (100-599), got {value!r}")
    return frozenset(value)


def _number(name: str, value: object, fail: Fail, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= minimum:
        raise fail(name, f"must be a number >= {minimum:g}, got {value!r}")
    return float(value)


def _whole(name: str, value: object, fail: Fail) -> int:
    if type(value) is not int or value < 1:
        raise fail(name, f"must be a whole number >= 1, got {value!r}")
    return value


def tuned(overrides: dict[str, float | int], path: Path = DEFAULT_VENDORS) -> str:
    """The vendors file's text with each of ``overrides`` (timeout, backoff_base, backoff_max,
    breaker_threshold, breaker_open_seconds, max_attempts) set for every vendor: for tests and the
    demo, where failures and recovery should take a second, not minutes."""
    known = (
        "timeout",
        "backoff_base",
        "backoff_max",
        "breaker_threshold",
        "breaker_open_seconds",
        "max_attempts",
    )
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise VendorConfigError(f"cannot tune {', '.join(unknown)}: only {', '.join(known)}")
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(rf"^({'|'.join(overrides)}) = .*$", flags=re.M)
    return pattern.sub(lambda m: f"{m.group(1)} = {overrides[m.group(1)]!r}", text)


def select_vendors(vendors: Mapping[str, Vendor], stores: Sequence[str] | None, source: Path) -> list[Vendor]:
    """The vendors of ``stores`` (all when None or empty), in that order; unknown ids are an error."""
    if not stores:
        return list(vendors.values())
    unknown = [s for s in stores if s not in vendors]
    if unknown:
        raise VendorConfigError(
            f"{source}: no vendor for store(s) {', '.join(unknown)}; known: {', '.join(vendors)}"
        )
    return [vendors[s] for s in dict.fromkeys(stores)]
