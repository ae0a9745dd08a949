"""A small internet on loopback: a scripted DNS server, HTTP and HTTPS servers, a resetting port, a silent port.

Everything here is a real server on 127.0.0.1; tests never touch a public address, the host's resolver or a
public DoH service (every run below passes --resolver and either --no-control or a local control).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
import trustme

from probe.lab.servers import (
    DnsEntry,
    DnsZone,
    InThread,
    Site,
    Sites,
    blackhole,
    serve_dns,
    serve_http,
    serve_reset,
)
from probe.measure.runner import RunOptions

# Reference data that may be read but never copied into the repository (PROBE_SHARED_DATA to point at it).
SHARED_DATA = Path(os.environ.get("PROBE_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
IN_CI = os.environ.get("CI", "").lower() in ("true", "1")
# Under CI=true every skip fails the run, except these (start of the skip reason -> why it is acceptable).
CI_ALLOWED_SKIPS = {
    "reference data not found at": "third-party reference data (Citizen Lab lists, real blockpages, OONI "
                                   "fingerprints) may not be copied into the repository; a clone outside /work has "
                                   "none unless PROBE_SHARED_DATA points at it",
}
_ci_unexpected_skips: list[str] = []
_skips_without_reason: list[str] = []
# pytest's own words when a skip was given no reason of its own.
_NO_REASON = ("unconditional skip", "condition:")


def root_only(*tools: str) -> str | None:
    """Why a test marked `root` cannot run here (not root, or a tool missing), or None if it can."""
    missing = [t for t in tools if shutil.which(t) is None and not Path(f"/usr/sbin/{t}").exists()]
    if os.geteuid() == 0 and not missing:
        return None
    needs = ", ".join(("root", *tools))
    why = "not root" if os.geteuid() != 0 else f"{', '.join(missing)} not found"
    return f"root only: needs {needs} ({why}); CI runs as root and runs it"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`@pytest.mark.root("unshare", ...)`: skipped, with its reason, for a developer who is not root."""
    for item in items:
        mark = item.get_closest_marker("root")
        if mark is not None and (reason := root_only(*mark.args)):
            item.add_marker(pytest.mark.skip(reason=reason))


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _note_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        if reason.strip() == "" or reason.startswith(_NO_REASON):
            _skips_without_reason.append(f"{report.nodeid}: {reason!r}")
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        if not any(reason.startswith(allowed) for allowed in CI_ALLOWED_SKIPS):
            _ci_unexpected_skips.append(f"{report.nodeid}: {reason}")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _note_skip(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _note_skip(report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _ci_unexpected_skips or _skips_without_reason:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _ci_unexpected_skips:
        terminalreporter.section("skipped under CI=true (a skip in CI is a failure)", red=True)
        for line in _ci_unexpected_skips:
            terminalreporter.write_line(line)
    if _skips_without_reason:
        terminalreporter.section("skipped without saying why (every skip must give its reason)", red=True)
        for line in _skips_without_reason:
            terminalreporter.write_line(line)
LOOP = "127.0.0.1"
NAMES = ["ok.test", "redirect.test", "big.test", "slow.test", "dynamic.test", "inject.test", "loop.test",
         "tohome.test", "tofile.test", "reset.test", "timeout.test", "refused.test", "tlsreset.test",
         "multi.test", "gzip.test", "control.test", "doh.test", "sni.test", "tlsip.test", "mitm.test",
         "tlsdown.test", LOOP]


@pytest.fixture(scope="session", autouse=True)
def never_the_hosts_resolver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Whatever a test forgets, `probe` in it (and in its subprocesses) sees a loopback-only resolv.conf."""
    import os

    conf = tmp_path_factory.mktemp("resolv") / "resolv.conf"
    conf.write_text("nameserver 127.0.0.1\n")  # nothing listens on 127.0.0.1:53 in tests: refused at once
    saved = {k: os.environ.get(k) for k in ("PROBE_RESOLV_CONF", "PROBE_ACCEPT_RISK", "XDG_CONFIG_HOME",
                                            "PROBE_IP_SERVICE", "PROBE_DATA_DIR", "PROBE_PORTAL_CHECK")}
    os.environ["PROBE_IP_SERVICE"] = "none"  # no what-is-my-IP lookup unless a test serves one
    os.environ["PROBE_PORTAL_CHECK"] = "none"  # no connectivity check unless a test serves one
    os.environ["PROBE_DATA_DIR"] = str(tmp_path_factory.mktemp("data"))  # no cached lists or signatures
    os.environ["PROBE_RESOLV_CONF"] = str(conf)
    os.environ["PROBE_ACCEPT_RISK"] = "1"  # the consent prompt has its own test
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("config"))  # never the tester's own config
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="session")
def server_ssl(ca: trustme.CA):
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*NAMES).configure_cert(ctx)
    return ctx


@pytest.fixture(scope="session")
def wrong_name_ssl(ca: trustme.CA):
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("someone-else.test").configure_cert(ctx)
    return ctx


def closed_port() -> int:
    s = socket.socket()
    s.bind((LOOP, 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connect gets RST -> connection_refused
    return port


@dataclass
class Net:
    """Ports of the loopback internet, and helpers to build URLs and run options for it."""

    dns_port: int = 0
    http_port: int = 0
    https_port: int = 0
    badcert_port: int = 0
    reset_port: int = 0
    silent_port: int = 0
    refused_port: int = 0
    zone: DnsZone = field(default_factory=DnsZone)
    sites: Sites = field(default_factory=Sites)
    ca_file: str = ""
    truth: DnsZone = field(default_factory=DnsZone)  # the control's (uncensored) view, when a test sets one up
    helper_port: int = 0
    doh_port: int = 0

    def http(self, host: str, path: str = "/") -> str:
        return f"http://{host}:{self.http_port}{path}"

    def https(self, host: str, path: str = "/") -> str:
        return f"https://{host}:{self.https_port}{path}"

    def options(self, **kw) -> RunOptions:
        # doh=(): a test that turns the control on without naming a DoH server must not reach the public defaults.
        base = dict(resolvers=(f"{LOOP}:{self.dns_port}",), system_resolver=False, no_control=True, doh=(),
                    allow_net=("127.0.0.0/8",),
                    ca_file=self.ca_file, timeout=2.0, dns_timeout=1.0, late_window=0.3, db_path=":memory:",
                    decoy_sni="decoy.test")
        base.update(kw)
        return RunOptions(**base)


def build_net(net: Net) -> None:
    a = (LOOP,)
    z = net.zone.entries
    for name in NAMES[:-1]:
        z[name] = DnsEntry(a=a)
    z["nx.test"] = DnsEntry(behaviour="nxdomain")
    z["lie.test"] = DnsEntry(a=("10.10.34.35",))
    z["inject.test"] = DnsEntry(a=a, behaviour="inject", forged=("10.10.34.36",))
    z["servfail.test"] = DnsEntry(behaviour="servfail")
    z["cname.test"] = DnsEntry(a=a, cname="ok.test")
    z["multi.test"] = DnsEntry(a=(LOOP, "127.0.0.2"))
    z["loose.test"] = DnsEntry(a=a, behaviour="loose", forged=("10.10.34.37",))
    s = net.sites.by_host
    s["ok.test"] = Site(title="Welcome to the ok site")
    s["cname.test"] = s["ok.test"]
    s["multi.test"] = s["ok.test"]
    s["dynamic.test"] = Site(title="Always changing news", behaviour="dynamic")
    s["redirect.test"] = Site(status=302, location=f"http://ok.test:{net.http_port}/landing")
    s["loop.test"] = Site(status=302, location="/again")
    s["tohome.test"] = Site(status=302, location="http://192.168.1.1/admin")
    s["tofile.test"] = Site(status=302, location="file:///etc/passwd")
    s["big.test"] = Site(behaviour="big", size=3 * 1024 * 1024)
    s["slow.test"] = Site(behaviour="slow-body")
    s["inject.test"] = s["ok.test"]
    s["loose.test"] = s["ok.test"]


@pytest.fixture
async def net(nursery: trio.Nursery, server_ssl, wrong_name_ssl, ca_file) -> AsyncIterator[Net]:
    n = Net(ca_file=ca_file)
    n.dns_port = await nursery.start(serve_dns, n.zone)
    n.http_port = await nursery.start(serve_http, n.sites)
    n.https_port = await nursery.start(lambda task_status: serve_http(n.sites, ssl_context=server_ssl,
                                                                      task_status=task_status))
    n.badcert_port = await nursery.start(lambda task_status: serve_http(n.sites, ssl_context=wrong_name_ssl,
                                                                        task_status=task_status))
    n.reset_port = await nursery.start(serve_reset)
    lst, fillers, n.silent_port = blackhole()
    n.refused_port = closed_port()
    build_net(n)
    yield n
    for s in (lst, *fillers):
        s.close()


@pytest.fixture
def shared_data() -> Iterator[Path]:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA}")
    yield SHARED_DATA


GOLDEN = Path(__file__).parent / "golden"


def write_golden(db, row, scenario: str) -> None:
    """With PROBE_WRITE_GOLDEN=1, keep a measured scenario as a golden file (observations in, verdict out)."""
    import json
    import os

    from probe.serialize import to_dict
    from probe.storage import load_observations

    if not os.environ.get("PROBE_WRITE_GOLDEN"):
        return
    GOLDEN.mkdir(exist_ok=True)
    doc = {"scenario": scenario,
           "expected": {k: row[k] for k in ("status", "layer", "detail", "rule")},
           "observations": to_dict(load_observations(db, row))}
    (GOLDEN / f"{row['rule']}--{scenario}.json").write_text(json.dumps(doc, indent=1) + "\n")


@pytest.fixture
def internet():
    """DNS and HTTP servers in a background thread, for tests that run `probe` as a subprocess."""
    zone = DnsZone(entries={"*.test": DnsEntry(a=("127.0.0.1",)), "nx.test": DnsEntry(behaviour="nxdomain")})
    sites = Sites(default=Site(title="A lab page"), delay=0.0)
    with InThread(lambda task_status: serve_dns(zone, task_status=task_status),
                  lambda task_status: serve_http(sites, task_status=task_status)) as servers:
        yield servers.ports[0], servers.ports[1], sites

@contextlib.contextmanager
def running_lab(prefix: str, scenarios: tuple | None = None) -> Iterator:
    """A lab up for a module's tests (all scenarios, or these), always torn down."""
    from probe.lab.topology import Lab

    lab = Lab(prefix=prefix)
    lab.up() if scenarios is None else lab.up(scenarios)
    try:
        yield lab
    finally:
        lab.down()


from tests.control_world import world  # noqa: E402, F401  (the fixture, shared by control and research tests)
