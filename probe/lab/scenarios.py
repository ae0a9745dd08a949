"""The lab's scenarios: what the censoring ISP does to each site, and the verdict we must get.

One row per scenario. `censor` says which mechanism topology.py sets up for it (dnsmasq lies, iptables rules in
the ISP router, the nginx transparent proxy, a packet injector); `expect` is the exact status the verdict must
have and `layer` the layer it must name; `control` whether the probe runs with the helper or with DoH alone.
Site addresses come from 198.18.0.0/15, inside the lab only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Expect = Literal["blocked", "anomaly", "ok", "down", "error"]
Censor = Literal["none", "dns-nxdomain", "dns-blockpage", "dns-bogon", "dns-intercept", "dns-unknown-server",
                 "tcp-drop", "tcp-unreachable", "tcp-rst", "sni-rst", "sni-drop", "host-rst", "proxy-200",
                 "proxy-302", "proxy-notice", "inject-302", "dns-inject", "down", "partial-drop",
                 # a real home network's troubles and the subtler censors (issue 19)
                 "loss", "flaky-syn", "dns-ghost", "dns-servfail-all", "keyword-rst", "tls-intercept",
                 "iframe-notice", "transparent-cache", "cdn-inside",
                 # QUIC (issue 20): UDP/443 dropped for one site; QUIC Initials carrying the name dropped
                 "udp-drop", "quic-sni",
                 # a censor one router further than the ISP, at the gateway (issue 20: where the censor sits)
                 "gw-sni-rst", "gw-sni-drop",
                 # throttling (issue 20; shaping.py): a site slowed to ~1/300 for this network only, and a TLS
                 # handshake whose server flight trickles in and stalls
                 "throttle", "trickle-stall"]
# How the probe runs: with the lab's helper and DoH ("full"), with DoH alone (as most volunteers will), or with
# a control that cannot be reached from this network ("down").
Control = Literal["full", "doh", "down"]
# Which resolver the probe asks: the ISP's (honest but censoring) or one that answers every name that does not
# exist with its advertising server (NXDOMAIN hijacking).
Resolver = Literal["isp", "hijacking"]
# How a site answers the helper's datacenter (abroad) unlike this network: a localized edition here, a consent
# wall or a refusal or a rate limit there, the site's own geo-block here, a CDN's challenge here.
Vantage = Literal["localized", "consent", "datacenter", "ratelimit", "geoblock", "cdn-challenge"]
# The volunteer's access line: "slow" is a thin line for everything, "lossy" one that drops 5% of every packet
# (shaping.py); each measured in a probe run of its own.
Line = Literal["fast", "slow", "lossy"]
# Pages that sites serve everybody and that look like refusals: a server's defaults, a CDN's challenge, a page
# that is all JavaScript, a redirect to https:// (bench/world.py fills a world with them).
Page = Literal["nginx-default", "404", "403", "500", "cf-challenge", "js-only", "unavailable", "to-https"]
DOMAIN = "lab.test"
ISP_BLOCKPAGE_IP = "198.18.3.83"  # the ISP's blockpage server (like Nayatel's 203.82.48.83)
ISP_NOTICE_IP = "198.18.3.84"  # another ISP server, with a notice no signature knows
MOBILINK_NOTICE = "119.73.65.87"  # a known censor's notice server, bound inside the (routeless) ISP namespace
BOGON = "10.10.34.35"
GHOST_IP = "198.18.3.85"  # where the ISP's resolver sends a name that exists nowhere: nothing listens there
AD_SERVER_IP = "198.18.3.86"  # the hijacking resolver's answer for names that do not exist: a search page
CDN_INSIDE_IP = "198.18.13.1"  # a CDN node inside the ISP, serving the same site with valid TLS
GATEWAY_NET = "198.18.16"  # sites behind the gateway, one router further than the ISP (lab/gateway.py)
KEYWORD = "forbidden-keyword-7"  # a word the ISP's filter resets connections on when a response carries it


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    scheme: Literal["http", "https"]
    ips: tuple[str, ...]
    censor: Censor
    expect: Expect  # the exact status: a regression from blocked to anomaly shows
    layer: str | None
    dynamic: bool = False
    fingerprint: str | None = None  # the signature the verdict must name, when there is one
    control: Control = "full"
    redirect: str | None = None  # the site answers 302 to this scenario's URL (a chain failing at hop two)
    inject_to: str | None = None  # for inject-302: where the forged redirect points; for dns-inject: the address
    resolver: Resolver = "isp"
    vantage: Vantage | None = None
    exists: bool = True  # the name has an address in the lab's internet (False: NXDOMAIN for the control)
    repeat: bool = False  # flaky or lossy: run ten times in a row by the tests, the same verdict every time
    page: Page | None = None  # the site's own page when it is not a plain one (to everybody alike)
    # The exact QUIC value the verdict must carry beside its status (analysis/quic.py); None: not checked.
    quic: str | None = None
    h3: bool = True  # an https site that also speaks QUIC (the lab's QUIC server on UDP/443)
    size: int = 0  # the page's size in bytes (0: the usual ~17 KB); throttling needs a body large enough to time
    rate: int = 0  # the site's own server sends at most this many bytes a second, to everybody (0: no limit)
    line: Line = "fast"
    detail: str | None = None  # the exact verdict detail, where the layer alone does not say it

    @property
    def host(self) -> str:
        return f"{self.name}.{DOMAIN}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}/"


def _ip(n: int) -> str:
    return f"198.18.10.{n}"


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("dns-nxdomain", "http", (_ip(1),), "dns-nxdomain", "blocked", "dns"),
    Scenario("dns-blockpage", "http", (_ip(2),), "dns-blockpage", "blocked", "dns",
             fingerprint="lab.isp-blockpage-dns"),
    Scenario("dns-bogon", "http", (_ip(3),), "dns-bogon", "blocked", "dns"),
    Scenario("intercept", "http", (_ip(4),), "dns-intercept", "blocked", "dns"),
    Scenario("tcp-drop", "http", (_ip(5),), "tcp-drop", "blocked", "tcp"),
    Scenario("tcp-rst", "https", (_ip(6),), "tcp-rst", "blocked", "tcp"),
    # The router answers with an ICMP host-unreachable: the network's doing, not a missing route here.
    Scenario("tcp-unreach", "http", (_ip(25),), "tcp-unreachable", "blocked", "tcp"),
    Scenario("snirst", "https", (_ip(7),), "sni-rst", "blocked", "tls"),
    Scenario("snidrop", "https", (_ip(8),), "sni-drop", "blocked", "tls"),
    Scenario("hostrst", "http", (_ip(9),), "host-rst", "blocked", "http"),
    Scenario("proxy-blockpage", "http", (_ip(10),), "proxy-200", "blocked", "http",
             fingerprint="probe.pk.surf-safely"),
    Scenario("proxy-redirect", "http", (_ip(11),), "proxy-302", "blocked", "http",
             fingerprint="probe.pk.surf-safely"),
    Scenario("down", "http", (_ip(12),), "down", "down", "tcp"),
    Scenario("dynamic", "http", (_ip(13),), "none", "ok", None, dynamic=True),
    # One of two addresses dropped, the page through the other the same as the helper's: the confirmed page
    # outranks the partial failure (kept in the evidence).
    Scenario("multi", "http", (_ip(14), _ip(15)), "partial-drop", "ok", None),
    # The ISP's resolver sends the name to its own server, which shows a notice no signature knows; the public
    # resolver the probe also asks and the control give the real address.
    Scenario("dns-unknown", "http", (_ip(16),), "dns-unknown-server", "blocked", "dns"),
    Scenario("dns-unknown-doh", "http", (_ip(17),), "dns-unknown-server", "blocked", "dns", control="doh"),
    # On-path injection (a raw socket in the ISP router; iptables drops the real request): a 302 to a notice on
    # another host, as long as the real page. Mobilink's notice URL is a known signature; the other is not.
    Scenario("inject-mobilink", "http", (_ip(18),), "inject-302", "blocked", "http",
             fingerprint="probe.pk.mobilink-redirect-location",
             inject_to=f"http://{MOBILINK_NOTICE}:8080/redirect.html?accessurl=inject-mobilink.{DOMAIN}/"),
    Scenario("inject-unknown", "http", (_ip(19),), "inject-302", "anomaly", "http",
             inject_to=f"http://{ISP_NOTICE_IP}/notice.html"),
    # On-path DNS injection: a forged A answer to the query sent to the public resolver races the real one
    # (the late-reply listener hears both; the control says which is forged).
    Scenario("dns-inject", "http", (_ip(26),), "dns-inject", "blocked", "dns", inject_to=ISP_NOTICE_IP),
    # A transparent proxy with a notice no signature knows, and only DoH as control: the host's https:// page
    # (verified TLS) is the reference.
    Scenario("proxy-notice", "http", (_ip(20),), "proxy-notice", "anomaly", "http", control="doh"),
    # Redirect chains that fail at the second hop, at each layer.
    Scenario("redir-dns", "http", (_ip(21),), "none", "blocked", "dns", redirect="dns-nxdomain"),
    Scenario("redir-tcp", "http", (_ip(22),), "none", "blocked", "tcp", redirect="tcp-drop"),
    Scenario("redir-tls", "http", (_ip(23),), "none", "blocked", "tls", redirect="snirst"),
    Scenario("redir-http", "http", (_ip(24),), "none", "blocked", "http", redirect="hostrst"),
    # A name that points to loopback for everyone: misconfigured or internal, not censored.
    Scenario("loopback", "http", ("127.0.0.1",), "none", "down", "dns"),
    *(Scenario(f"clean{i}", "http", (f"198.18.11.{i}",), "none", "ok", None) for i in range(1, 13)),
    *(Scenario(f"secure{i}", "https", (f"198.18.12.{i}",), "none", "ok", None) for i in range(1, 13)),
    Scenario("clean-doh", "http", ("198.18.11.13",), "none", "ok", None, control="doh"),
    Scenario("secure-doh", "https", ("198.18.12.13",), "none", "ok", None, control="doh"),
    # A real home network (issue 19). A congested access link drops 10% of the site's packets both ways; every
    # other SYN to a site is reset (a flaky link or a busy box): a failure that a second try does not repeat.
    *(Scenario(f"lossy{i}", "http" if i % 2 else "https", (f"198.18.14.{i}",), "loss", "ok", None, repeat=True)
      for i in range(1, 5)),
    Scenario("flaky", "http", ("198.18.14.10",), "flaky-syn", "ok", None, repeat=True),
    Scenario("flaky-tls", "https", ("198.18.14.11",), "flaky-syn", "ok", None, repeat=True),
    # Sites that answer by the client's address (the helper sits in a datacenter abroad): over http://, the page
    # that differs from the helper's is compared with the same host's page over verified HTTPS from here.
    *(Scenario(f"vantage-{v}", "http", (f"198.18.14.{20 + i}",), "none", "ok", None, vantage=v)
      for i, v in enumerate(get_args(Vantage))),
    Scenario("vantage-localized-https", "https", ("198.18.14.30",), "none", "ok", None, vantage="localized"),
    # A transparent cache in the ISP (Via, X-Cache) and a CDN node inside the ISP (another prefix, valid TLS).
    Scenario("isp-cache", "http", ("198.18.14.31",), "transparent-cache", "ok", None),
    Scenario("cdn-inside", "http", ("198.18.14.32",), "cdn-inside", "ok", None),
    Scenario("cdn-inside-https", "https", ("198.18.14.33",), "cdn-inside", "ok", None),
    # NXDOMAIN hijacking beside ghost DNS: a name that exists nowhere, answered by a resolver that answers every
    # such name (its ad server: not censorship), and by the honest ISP resolver for this name only (censorship).
    Scenario("nx-hijacked", "http", (AD_SERVER_IP,), "none", "down", "dns", resolver="hijacking", exists=False),
    Scenario("clean-hijacking", "http", ("198.18.14.40",), "none", "ok", None, resolver="hijacking"),
    Scenario("ghost", "http", (GHOST_IP,), "dns-ghost", "blocked", "dns", exists=False),
    Scenario("nx-everywhere", "http", ("198.18.14.41",), "none", "down", "dns", exists=False),
    # Subtle censorship stays caught: every DNS query for the name intercepted and answered SERVFAIL (the public
    # resolver's too) while DoH works; a reset after a keyword in the response; a TLS interception certificate
    # for this name only; a 200 page that frames the Mobilink notice address.
    Scenario("dns-servfail-all", "http", ("198.18.14.50",), "dns-servfail-all", "anomaly", "dns"),
    Scenario("keyword-rst", "http", ("198.18.14.51",), "keyword-rst", "blocked", "http"),
    Scenario("tls-intercept", "https", ("198.18.14.52",), "tls-intercept", "blocked", "tls"),
    Scenario("iframe-notice", "http", ("198.18.14.53",), "iframe-notice", "blocked", "http",
             fingerprint="probe.pk.mobilink-redirect-body"),
    # The control cannot be reached from this network: nothing is blocked without it.
    Scenario("ctl-down-clean", "http", ("198.18.14.60",), "none", "ok", None, control="down"),
    Scenario("ctl-down-drop", "http", ("198.18.14.61",), "tcp-drop", "error", None, control="down"),
    # QUIC (issue 20): its value stands beside the TCP/TLS status, which stays `ok` (browsers fall back to TCP).
    # QUIC working; UDP/443 dropped for one site by the ISP router (iptables); QUIC Initials that carry the name
    # dropped (lab/quic_filter.py decrypts them); a site that does no QUIC at all (nobody gets a handshake);
    # UDP/443 dropped with DoH alone as control: nobody says whether the site does QUIC, so no claim.
    Scenario("quic-ok", "https", ("198.18.15.1",), "none", "ok", None, quic="ok"),
    Scenario("quic-udp", "https", ("198.18.15.2",), "udp-drop", "ok", None, quic="udp-blocked"),
    Scenario("quic-sni", "https", ("198.18.15.3",), "quic-sni", "ok", None, quic="sni-blocked"),
    Scenario("quic-none", "https", ("198.18.15.4",), "none", "ok", None, quic="unavailable", h3=False),
    Scenario("quic-udp-doh", "https", ("198.18.15.5",), "udp-drop", "ok", None, quic="failed", control="doh"),
    # Where the censor sits (issue 20): these sites are reached through a second router, the gateway (see
    # lab/gateway.py), which resets or drops ClientHellos naming them; `probe run` locates it by TTL.
    # (Names that do not contain an ISP-filtered name: the ISP's string match would catch them first.)
    Scenario("gwreset", "https", (f"{GATEWAY_NET}.7",), "gw-sni-rst", "blocked", "tls"),
    Scenario("gwdrop", "https", (f"{GATEWAY_NET}.8",), "gw-sni-drop", "blocked", "tls"),
    # Throttling (issue 20). A site shaped to 64 KB/s for this network only (~1/300 of what the line carries from
    # the helper), its 128 KiB page complete within the timeout: blocked, twice slow against the control and the
    # line. A handshake whose server flight trickles in and stalls (each connection gets its first ~1.5 KB, then
    # nothing): blocked, because it reproduces, the control's handshake completes and the survey found the line
    # carrying bytes (a dropped ClientHello would read nothing). Not throttling: a server slow for everyone (the
    # control is slow too), a big page on a slow access line (the line's speed explains it; a run of its own),
    # a big page on a fast line.
    Scenario("throttled", "http", ("198.18.15.21",), "throttle", "blocked", "http", size=128 * 1024, repeat=True,
             detail="http/throttled"),
    Scenario("throttled-https", "https", ("198.18.15.22",), "throttle", "blocked", "http", size=128 * 1024,
             repeat=True, detail="http/throttled"),
    Scenario("trickle-stall", "https", ("198.18.15.23",), "trickle-stall", "blocked", "tls", repeat=True,
             detail="tls/throttled"),
    Scenario("slow-everyone", "http", ("198.18.15.24",), "none", "ok", None, size=100 * 1024, rate=64 * 1024,
             repeat=True),
    Scenario("slow-everyone-https", "https", ("198.18.15.25",), "none", "ok", None, size=100 * 1024,
             rate=64 * 1024, repeat=True),
    Scenario("big-fast-line", "https", ("198.18.15.26",), "none", "ok", None, size=400 * 1024, repeat=True),
    Scenario("big-slow-line", "http", ("198.18.15.27",), "none", "ok", None, size=400 * 1024, line="slow",
             repeat=True),
    Scenario("big-slow-line-https", "https", ("198.18.15.28",), "none", "ok", None, size=400 * 1024, line="slow",
             repeat=True),
    # A big page on a lossy line (5% of every packet dropped, both ways): retransmissions slow it far below the
    # helper's fetch, but the line's own sample is slowed alike: ok.
    Scenario("big-lossy-line", "http", ("198.18.15.29",), "none", "ok", None, size=128 * 1024, line="lossy",
             repeat=True),
    Scenario("big-lossy-line-https", "https", ("198.18.15.30",), "none", "ok", None, size=128 * 1024,
             line="lossy", repeat=True),
)


def url_of(name: str) -> str:
    return next(s.url for s in SCENARIOS if s.name == name)


def by_name(names: list[str] | tuple[str, ...]) -> tuple[Scenario, ...]:
    known = {s.name: s for s in SCENARIOS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return tuple(known[n] for n in names)
