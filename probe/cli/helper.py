"""`probe helper serve`: the control helper, answering probes' control requests (the work is control/)."""

from __future__ import annotations

import click
import trio

from .support import InputFile


@click.group("helper")
def helper_group() -> None:
    """The control helper (OONI Web Connectivity test-helper protocol)."""


@helper_group.command("serve")
@click.option("--listen", default="127.0.0.1:8780", show_default=True, metavar="HOST:PORT")
@click.option("--resolver", "resolvers", multiple=True, metavar="HOST[:PORT]",
              help="Resolver the helper uses (default: its system resolver).")
@click.option("--ca-file", type=InputFile("PEM file", 16), help="Extra trust anchors (PEM).")
@click.option("--allow-net", multiple=True, metavar="CIDR", help="Let the helper connect into this range (labs "
              "only: on the internet, the helper must never reach private addresses).")
@click.option("--tls-cert", type=InputFile("PEM file", 16), help="Serve HTTPS with this cert.")
@click.option("--tls-key", type=InputFile("PEM file", 16))
@click.option("--timeout", type=click.FloatRange(0.1, 60), default=10.0, show_default=True)
def helper_serve(listen: str, resolvers: tuple[str, ...], ca_file: str | None, allow_net: tuple[str, ...],
                 tls_cert: str | None, tls_key: str | None, timeout: float) -> None:
    """Answer control requests from probes; run it outside the censored network.

    Example:

        probe helper serve --listen 0.0.0.0:8780
    """
    from ..control.helper_server import serve_until_signal

    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise click.ClickException(f"--listen wants HOST:PORT with a port from 0 (any free port) to 65535, got "
                                   f"{listen!r}")
    host = host.strip("[]") or "0.0.0.0"
    scheme = "https" if tls_cert else "http"

    def listening(bound: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        click.echo(f"helper listening on {scheme}://{shown}:{bound}/ (Ctrl-C stops it)")

    try:
        trio.run(lambda: serve_until_signal(host, int(port), listening, resolvers=resolvers, ca_file=ca_file,
                                            allow_net=allow_net, tls_cert=tls_cert, tls_key=tls_key,
                                            timeout=timeout))
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"--listen {listen}: cannot listen there: {e.strerror or e}") from None
    click.echo("helper stopped", err=True)


COMMANDS = [helper_group]
