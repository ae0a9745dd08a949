"""Reading, validating and normalising URL lists.

Inputs are Citizen Lab CSV files (`url,category_code,...`), plain text files (one URL a line, `#` comments) and
URLs given directly. A bad line never stops the others: it becomes a `ListWarning` naming the file and line.
"""

from __future__ import annotations

import csv
import ipaddress
import os
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import idna

from ..errors import ProbeError
from ..models import Target

CITIZENLAB_HEADER = ("url", "category_code", "category_description", "date_added", "source", "notes")
MAX_URL_LENGTH = 2048
MAX_LIST_BYTES = 64 << 20  # Citizen Lab's global list is ~150 KB; 64 MB is some 500,000 URLs
DEFAULT_PORTS = {"http": 80, "https": 443}


class TargetError(ProbeError, ValueError):
    """A URL that cannot be measured; the message says why."""


@dataclass(frozen=True, slots=True)
class ListWarning:
    source: str  # file name, or "argv"
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        return f"{where}: {self.message}"


def _host_to_ascii(host: str) -> str:
    if host.startswith("["):
        if not host.endswith("]"):
            raise TargetError(f"unbalanced brackets in host {host!r}")
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            raise TargetError(f"invalid IPv6 address {host!r}") from None
    host = host.rstrip(".").lower()
    if not host:
        raise TargetError("no host name")
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    if host.isascii():
        labels = host.split(".")
        if any(not lab or len(lab) > 63 for lab in labels) or len(host) > 253:
            raise TargetError(f"invalid host name {host!r}")
        if any(not all(c.isalnum() or c in "-_" for c in lab) for lab in labels):
            raise TargetError(f"invalid characters in host name {host!r}")
        if any(lab.startswith("xn--") for lab in labels):
            try:
                idna.decode(host)
            except (idna.IDNAError, UnicodeError) as e:
                raise TargetError(f"invalid internationalised host name {host!r}: {e}") from None
        return host
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as e:
        raise TargetError(f"invalid internationalised host name {host!r}: {e}") from None


def normalise(raw: str, *, category: str = "", source: str = "") -> Target:
    """Parse and normalise one URL: lower-case scheme and host, punycode, default port, no fragment."""
    url = raw.strip()
    if not url:
        raise TargetError("empty URL")
    if len(url) > MAX_URL_LENGTH:
        raise TargetError(f"URL longer than {MAX_URL_LENGTH} characters ({len(url)})")
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c.isspace() for c in url):
        raise TargetError("URL contains spaces or control characters")
    if "://" not in url:
        raise TargetError(f"no scheme in {url[:80]!r}: write http://... or https://...")
    try:
        parts = urllib.parse.urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError as e:  # e.g. "Invalid IPv6 URL"
        raise TargetError(f"unparseable URL: {e}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise TargetError(f"unsupported scheme {scheme!r} (only http and https)")
    if user is not None or password is not None:
        raise TargetError("URL carries a user name or password")
    netloc = parts.netloc
    host_port = netloc.rsplit("@", 1)[-1]
    if host_port.startswith("["):
        host, _, rest = host_port.partition("]")
        host += "]"
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise TargetError(f"invalid host {host_port!r}")
    else:
        host, _, port_text = host_port.partition(":")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise TargetError(f"invalid port {port_text!r}")
        port = int(port_text)
    else:
        port = DEFAULT_PORTS[scheme]
    hostname = _host_to_ascii(host)
    netloc_out = hostname if port == DEFAULT_PORTS[scheme] else f"{hostname}:{port}"
    path = parts.path or "/"
    normal = urllib.parse.urlunsplit((scheme, netloc_out, path, parts.query, ""))
    return Target(
        url=normal,
        hostname=hostname.strip("[]"),
        scheme=scheme,  # type: ignore[arg-type]  # checked against DEFAULT_PORTS above
        port=port,
        category=category,
        source=source,
    )


def _lines_from_text(text: str, source: str) -> Iterable[tuple[int, str, str]]:
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield n, stripped, ""


def _lines_from_csv(text: str, source: str, warnings: list[ListWarning]) -> Iterable[tuple[int, str, str]]:
    """Each physical line parsed on its own: an unbalanced quote costs its own line, not the rest of the file
    (Citizen Lab's lists have no fields spanning lines)."""
    header: list[str] | None = None
    url_i, cat_i = 0, None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        row = next(csv.reader([line]), [])
        if header is None:
            header = [h.strip().lower() for h in row]
            if "url" not in header:
                warnings.append(ListWarning(source, n, f"no 'url' column in header {row!r}; "
                                            f"expected {','.join(CITIZENLAB_HEADER)}"))
                return
            url_i = header.index("url")
            cat_i = header.index("category_code") if "category_code" in header else None
            continue
        if len(row) != len(header):
            warnings.append(ListWarning(source, n, f"expected {len(header)} columns, found {len(row)}"))
            continue
        yield n, row[url_i], (row[cat_i].strip() if cat_i is not None else "")


def parse_list(text: str, source: str, *, csv_format: bool) -> tuple[list[Target], list[ListWarning]]:
    text = text.removeprefix("\ufeff")  # a byte-order mark would hide the CSV header
    warnings: list[ListWarning] = []
    rows = _lines_from_csv(text, source, warnings) if csv_format else _lines_from_text(text, source)
    targets = []
    for n, url, category in rows:
        try:
            targets.append(normalise(url, category=category, source=f"{source}:{n}"))
        except TargetError as e:
            warnings.append(ListWarning(source, n, str(e)))
    return targets, warnings


def read_inputs(inputs: Iterable[str]) -> tuple[list[Target], list[ListWarning]]:
    """Targets from files and URLs, de-duplicated (first occurrence wins, keeping its category)."""
    targets: list[Target] = []
    warnings: list[ListWarning] = []
    for item in inputs:
        if "://" in item:
            try:
                targets.append(normalise(item, source="argv"))
            except TargetError as e:
                warnings.append(ListWarning("argv", None, f"{item[:80]!r}: {e}"))
            continue
        path = Path(item)
        try:
            data = _read_list(path)
        except OSError as e:
            hint = ""
            host = item.split("/")[0]
            if not path.exists() and "." in host and path.suffix.lower() not in (".txt", ".csv"):
                hint = f"; to measure a site, give a URL with its scheme: http://{item}"
            raise TargetError(f"cannot read list {item}: {e.strerror or e}{hint}") from None
        if _binary(data):
            raise TargetError(f"{item} is not a list of URLs (binary data): give a text file, one URL a line, or a "
                              "Citizen Lab .csv")
        text = data.decode("utf-8", errors="replace")
        found, warns = parse_list(text, item, csv_format=path.suffix.lower() == ".csv")
        targets.extend(found)
        warnings.extend(warns)
    return dedupe(targets), warnings


def _read_list(path: Path) -> bytes:
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_LIST_BYTES:
            raise TargetError(f"{path} is {size / 2**20:,.0f} MB: a list may be {MAX_LIST_BYTES >> 20} MB at most "
                              "(split it, or check that it is a list)")
        return f.read(MAX_LIST_BYTES + 1)


def _binary(data: bytes) -> bool:
    """A NUL byte, or more than one character in ten neither text nor white space: not a list someone wrote.
    (A line or two in another encoding stays a warning each, as any bad line.)"""
    head = data[:65536]
    if b"\0" in head:
        return True
    text = head.decode("utf-8", errors="replace")
    odd = sum(1 for c in text if c == "\ufffd" or (c < " " and c not in "\t\n\r\f"))
    return odd * 10 > len(text)


def dedupe(targets: Iterable[Target]) -> list[Target]:
    seen: dict[str, Target] = {}
    for t in targets:
        seen.setdefault(t.url, t)
    return list(seen.values())


def filter_categories(targets: Iterable[Target], categories: Iterable[str]) -> list[Target]:
    wanted = {c.upper() for c in categories}
    return [t for t in targets if not wanted or t.category.upper() in wanted]
