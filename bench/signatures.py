"""Signature benchmark: time to load every set, and to match one 512 KiB body against all of them.

    python bench/signatures.py [--data ../shared/data]

Loads our built-in pack plus the four public files (OONI HTTP and DNS fingerprints, Censored Planet's blockpage
and false-positive signatures) from a folder laid out as in ../shared/data, best of 5 runs each.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from calibrate import machine  # bench/ is the script's directory

from probe.models import HttpHop
from probe.signatures import load

NAMES = {"fingerprints_http.csv": "fingerprints_http.csv", "fingerprints_dns.csv": "fingerprints_dns.csv",
         "censoredplanet-assets-blockpage_signatures.json": "blockpage_signatures.json",
         "censoredplanet-assets-false_positive_signatures.json": "false_positive_signatures.json"}


def best(fn, n=5):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for src, dst in NAMES.items():
            shutil.copy(Path(args.data) / src, Path(tmp) / dst)
        load_s, (sigset, warnings) = best(lambda: load(cache=Path(tmp)))
    page = (b"<html><head><title>A long page</title></head><body>"
            + b"<p>Ordinary text about the weather, cricket and the economy, nothing blocked here.</p>" * 8000)
    body = page[: 512 * 1024]
    hop = HttpHop(url="http://x.example/", headers=(("content-type", "text/html"), ("server", "nginx")), body=body)
    match_s, matches = best(lambda: sigset.match_hop(hop, 1))
    small = (Path(args.data) / "pk-surf-safely-blockpage-censoredplanet-quack-2021-05-31.html").read_bytes()
    small_s, small_matches = best(lambda: sigset.match_hop(HttpHop(url="x", body=small), 1), n=50)
    print(f"signatures loaded          {len(sigset)} ({len(warnings)} rows skipped)")
    print(f"load all sets              {load_s * 1000:.0f} ms (parse + compile + automaton)")
    print(f"match a 512 KiB body       {match_s * 1000:.1f} ms ({len(matches)} matches)")
    print(f"match the PK blockpage     {small_s * 1000:.2f} ms ({[m.signature.id for m in small_matches]})")
    print(f"machine                    {machine()}")


if __name__ == "__main__":
    main()
