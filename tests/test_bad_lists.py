"""Broken lists: one clear warning per bad line, every valid line measured."""

from __future__ import annotations

import json
import subprocess

from hypothesis import given, settings
from hypothesis import strategies as st

from probe.measure.targets import parse_list
from tests.test_cli_run import probe_cmd

MALFORMED_KINDS = [
    "example.com/no-scheme",
    "http://spaces in host.test/",
    "http://ctrl\x01char.test/",
    "http://x.test/\x7f",
    "ftp://wrong-scheme.test/",
    "javascript:alert(1)",
    "http://" + "a" * 10_000 + ".test/",
    "http://xn--zz.test/",
    "http://bad..dots.test/",
    "http://user:pw@creds.test/",
    "http://port.test:99999/",
    "http://[::1/",
    "http://",
    "https:///no-host",
    "http://under_score-ok-but-\u2603-snowman-.test/",
]


def malformed_lines(n: int) -> list[str]:
    return [MALFORMED_KINDS[i % len(MALFORMED_KINDS)].replace("test/", f"test/{i}") for i in range(n)]


def test_200_malformed_text_lines_each_warned_and_the_valid_ones_measured(internet, tmp_path):
    dns_port, http_port, _ = internet
    valid = [f"http://valid{i}.test:{http_port}/" for i in range(20)]
    lines = malformed_lines(200)
    mixed: list[str] = []
    for i, bad in enumerate(lines):
        mixed.append(bad)
        if i % 10 == 0:
            mixed.append(valid[i // 10])
    listing = tmp_path / "bad.txt"
    listing.write_bytes(("\ufeff" + "\r\n".join(mixed) + "\r\n").encode("utf-8"))  # a BOM and CRLF, too
    proc = subprocess.run(probe_cmd(dns_port, tmp_path / "r.db", str(listing), "--json", "--quiet"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    warnings = [w for w in proc.stderr.splitlines() if w.startswith("warning: ")]
    assert len(warnings) == 200
    line_numbers = [int(w.split(f"{listing}:")[1].split(":")[0]) for w in warnings]
    assert line_numbers == sorted(line_numbers) and len(set(line_numbers)) == 200
    assert all(len(w) < 300 for w in warnings), "a 10,000-character URL is not echoed whole"
    measured = {json.loads(x)["url"] for x in proc.stdout.splitlines()}
    assert measured == set(valid)


def test_csv_with_wrong_columns_bom_and_crlf(tmp_path):
    header = "url,category_code,category_description,date_added,source,notes"
    rows = [header, "http://ok1.test/,NEWS,News,2020-01-01,x,", "http://ok2.test/,NEWS,News,2020-01-01,x",
            "http://ok3.test/,NEWS,News,2020-01-01,x,,extra", '"http://ok4.test/,NEWS', "http://ok5.test/,GRP,G,d,s,n"]
    targets, warnings = parse_list("\ufeff" + "\r\n".join(rows), "list.csv", csv_format=True)
    assert [t.url for t in targets] == ["http://ok1.test/", "http://ok5.test/"]
    assert [w.line for w in warnings] == [3, 4, 5]


line = st.one_of(
    st.builds(lambda h: f"http://{h}.test/", st.from_regex(r"[a-z][a-z0-9]{0,15}", fullmatch=True)),
    st.text(max_size=80),
)


@settings(max_examples=200)
@given(st.lists(line, max_size=40))
def test_every_line_is_a_target_a_warning_or_skipped_on_purpose(lines):
    text = "\n".join(lines)
    targets, warnings = parse_list(text, "f.txt", csv_format=False)
    meaningful = [x for x in text.splitlines() if x.strip() and not x.strip().startswith("#")]
    assert len(targets) + len(warnings) == len(meaningful)
    assert all(w.line is not None and 1 <= w.line <= len(text.splitlines()) for w in warnings)
