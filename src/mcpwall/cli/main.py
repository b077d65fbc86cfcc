"""The ``mcpwall`` command: the proxy by default, and its subcommands.

Each subcommand lives in its own module, imported only when it runs, so that starting
the proxy (the command an MCP client spawns) loads only what the proxy needs.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import itertools
import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mcpwall import __version__

if TYPE_CHECKING:
    from mcpwall.auth.resource import Authenticator
    from mcpwall.policy import Policy
    from mcpwall.proxy.http import ListenerOptions
    from mcpwall.state.options import StateOptions

SUBCOMMANDS = {
    "validate": ("mcpwall.cli.validate", "check a policy file and report every error"),
    "check": ("mcpwall.cli.check", "evaluate one tool call against a policy, without a server"),
    "status": ("mcpwall.cli.status", "instances, calls and denials, from the audit logs"),
    "demo": ("mcpwall.cli.demo", "watch mcpwall judge a scripted agent session"),
    "scan": ("mcpwall.cli.scan", "list and classify a server's tools; write a policy scaffold"),
    "catalog": ("mcpwall.cli.catalog", "what a known server's tools do, their risk, our rules"),
    "pin": ("mcpwall.cli.pin", "list pinned tool definitions; accept the changed ones"),
}

EXIT_USAGE = 2
EXIT_NO_SERVER = 127  # as a shell says of a command it cannot run

_PROXY_USAGE = """mcpwall -c POLICY [options] -- COMMAND [ARGS...]
       mcpwall {validate,check,status,pin,scan,catalog,demo} ..."""

_PROXY_EPILOG = (
    """commands:
"""
    + "\n".join(f"  {name:<10} {text}" for name, (_, text) in SUBCOMMANDS.items())
    + """

Put mcpwall in front of a server in your MCP client's config:
  "command": "mcpwall", "args": ["-c", "policy.yaml", "--", "npx", "-y", "some-mcp-server"]
"""
)


class UserError(Exception):
    """A mistake in how mcpwall was called; printed as one sentence, exit status 2."""


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _asks_for_debug(args)
    try:
        if args and args[0] in SUBCOMMANDS:
            module = importlib.import_module(SUBCOMMANDS[args[0]][0])
            code = module.run(args[1:])
        else:
            code = _proxy(args)
    except UserError as exc:
        print(f"mcpwall: error: {exc}", file=sys.stderr)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # The reader went away (`mcpwall status | head`): nothing left to say to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    except Exception as exc:
        if debug:
            raise
        print(
            f"mcpwall: internal error: {type(exc).__name__}: {exc} "
            "(run with --log-level debug for the details)",
            file=sys.stderr,
        )
        code = 70
    sys.exit(code)


def _asks_for_debug(args: list[str]) -> bool:
    if "--" in args:
        args = args[: args.index("--")]  # what follows belongs to the server's command
    return "--log-level=debug" in args or any(
        flag == "--log-level" and value == "debug" for flag, value in itertools.pairwise(args)
    )


def add_state_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("state")
    group.add_argument(
        "--state-dir",
        metavar="DIR",
        help="directory of the SQLite state file (default: ~/.mcpwall)",
    )
    group.add_argument(
        "--state-dsn",
        metavar="DSN",
        help="state store instead of SQLite in --state-dir: memory:, sqlite:///path, "
        "redis://host:port/db, rediss://..., unix:///path/redis.sock",
    )
    group.add_argument(
        "--state-prefix",
        metavar="PREFIX",
        default="",
        help="prefix for every counter key, to keep policies apart",
    )
    group.add_argument(
        "--state-fail-mode",
        choices=("closed", "open"),
        default="closed",
        help="when the store is unreachable: deny calls that need it "
        "(closed, the default) or let them through (open)",
    )


def state_options(ns: argparse.Namespace) -> StateOptions:
    from mcpwall.state import check_dsn
    from mcpwall.state.options import StateOptions

    if ns.state_dir and ns.state_dsn:
        raise UserError("--state-dir and --state-dsn cannot be used together")
    try:
        check_dsn(ns.state_dsn)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return StateOptions(ns.state_dsn, ns.state_dir, ns.state_prefix, ns.state_fail_mode == "open")


def setup_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level={"warn": "WARNING"}.get(level, level.upper()),
        format="%(asctime)s mcpwall %(levelname)s: %(message)s",
    )
    if level != "debug":
        # The HTTP libraries log every request at INFO: noise, unless debugging.
        for name in ("httpx", "httpcore", "uvicorn", "uvicorn.access", "uvicorn.error"):
            logging.getLogger(name).setLevel(logging.WARNING)


def split_command(argv: list[str]) -> tuple[list[str], list[str]]:
    """mcpwall's own arguments, and the server's command after ``--`` (none: empty)."""
    if "--" not in argv:
        return argv, []
    split = argv.index("--")
    return argv[:split], argv[split + 1 :]


def write_out(text: str) -> None:
    """Print a command's result; a reader that stops early (``mcpwall ... | head``) is
    no error."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would fail again flushing stdout at exit: point it at /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _seconds(text: str) -> float:
    """A number of seconds above zero, for argparse."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"not a number of seconds above zero: {text!r}")
    return value


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse's, told the terminal's width: left to find it, argparse imports shutil,
    and bz2 and lzma with it, at every start of the proxy."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_terminal_width() - 2)


def _terminal_width() -> int:
    """As shutil.get_terminal_size says it: $COLUMNS, else the terminal's, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 80
    return columns


def _proxy(argv: list[str]) -> int:
    # Starting up allocates a great many objects and frees almost none: the cyclic
    # collector's passes over them only delay the first answer (by about 3 ms).
    # app.run_loop turns it back on once the proxy serves.
    gc.disable()
    try:
        return _start_proxy(argv)
    finally:
        gc.enable()


def _start_proxy(argv: list[str]) -> int:
    own, command = split_command(argv)
    parser = argparse.ArgumentParser(
        prog="mcpwall",
        usage=_PROXY_USAGE,
        epilog=_PROXY_EPILOG,
        description="A policy firewall for MCP: every tools/call is checked against a YAML "
        "policy before it reaches the server.",
        formatter_class=_Formatter,
    )
    parser.add_argument("-c", "--config", metavar="POLICY", help="the policy YAML file")
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warn", "warning", "error"),
        default="info",
        help="what mcpwall logs to stderr (default: info)",
    )
    parser.add_argument(
        "--transport",
        choices=("stdio", "http"),
        default="stdio",
        help="how clients connect: stdio (one client, the default) or http (Streamable "
        "HTTP, many clients)",
    )
    parser.add_argument(
        "--upstream",
        metavar="URL",
        help="a remote MCP server (Streamable HTTP, or legacy HTTP+SSE) instead of a command",
    )
    parser.add_argument(
        "--server-name",
        metavar="NAME",
        help="the name the server's tools are pinned under (default: its command line, or its URL)",
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a header for every request to --upstream (repeatable)",
    )
    parser.add_argument(
        "--max-message-size",
        type=int,
        metavar="BYTES",
        default=None,
        help="largest message relayed (default: 256 MiB)",
    )
    parser.add_argument(
        "--call-timeout",
        type=_seconds,
        metavar="SECONDS",
        default=None,
        help="answer a tools/call the server has not answered in this time with an error "
        "(default: wait for ever)",
    )
    parser.add_argument("--version", action="version", version=f"mcpwall {__version__}")
    add_state_options(parser)
    http = parser.add_argument_group("HTTP listener (--transport http)")
    http.add_argument(
        "--bind",
        default="127.0.0.1",
        metavar="ADDR",
        help="address to listen on (default: 127.0.0.1)",
    )
    http.add_argument(
        "--port",
        type=int,
        default=0,
        metavar="N",
        help="port to listen on (default: a free one, printed at start)",
    )
    http.add_argument(
        "--auth-token-file",
        metavar="FILE",
        help="require Authorization: Bearer with one of the tokens in FILE (one per line)",
    )
    http.add_argument(
        "--auth",
        metavar="issuer=URL,audience=AUD[,...]",
        help="require OAuth access tokens (JWT) from this issuer for this audience; "
        "more keys: scopes=a b (all required), jwks=URL (default: from the issuer's "
        "metadata), skew=SECONDS (default 60), resource=URL (the public URL of /mcp)",
    )
    http.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="HOST",
        help="a Host name clients may use (repeatable; default: the loopback "
        "names when bound to loopback)",
    )
    http.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a browser Origin allowed besides the allowed hosts (repeatable)",
    )
    http.add_argument(
        "--session-header",
        metavar="NAME",
        help="for stateless 2026-07-28 clients: the header that identifies "
        "an agent session (default: its bearer token)",
    )
    http.add_argument(
        "--forward-header",
        action="append",
        default=[],
        metavar="NAME",
        help="a client header to pass on to --upstream, e.g. Authorization "
        "(repeatable; by default none is)",
    )
    ops = parser.add_argument_group("operations")
    ops.add_argument(
        "--events-dir", metavar="DIR", help="where the audit log goes (default: ~/.mcpwall/events)"
    )
    ops.add_argument(
        "--log-args",
        action="store_true",
        help="write the calls' arguments to the audit log, secrets redacted "
        "(by default only their SHA-256)",
    )
    ops.add_argument(
        "--events-retention-days",
        type=float,
        default=7.0,
        metavar="DAYS",
        help="audit files older than this are deleted (default: 7)",
    )
    ops.add_argument(
        "--metrics-port", type=int, metavar="PORT", help="serve Prometheus metrics on this port"
    )
    ops.add_argument(
        "--metrics-bind",
        default="127.0.0.1",
        metavar="ADDR",
        help="address for the metrics endpoint (default: 127.0.0.1)",
    )
    ops.add_argument(
        "--otlp-endpoint",
        metavar="URL",
        help="send a trace span for each call over OTLP/HTTP, e.g. http://localhost:4318 "
        "(default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT, "
        "else no traces); needs mcpwall[otel]",
    )
    ns = parser.parse_args(own)
    if ns.auth is not None and ns.transport != "http":
        raise UserError("--auth applies to --transport http (stdio has no tokens to check)")
    if not ns.config:
        parser.print_usage(sys.stderr)
        raise UserError("a policy is required: -c POLICY")
    if command and ns.upstream:
        raise UserError("give either --upstream URL or a command after --, not both")
    if not command and not ns.upstream:
        raise UserError(
            "no server: put its command after --, e.g. mcpwall -c policy.yaml "
            "-- npx -y some-mcp-server, or give --upstream URL"
        )
    setup_logging(ns.log_level)
    from mcpwall.proxy.framing import DEFAULT_MAX_MESSAGE
    from mcpwall.proxy.spawn import ServerStartError, spawn

    # Everything that can refuse the command line comes before the server is started.
    state = state_options(ns)
    headers = _headers(ns.header)
    max_message = ns.max_message_size or DEFAULT_MAX_MESSAGE
    listener = _listener(ns, max_message) if ns.transport == "http" else None
    policy = _load_policy(ns.config)
    spawned = None
    try:
        if command and listener is None:
            # The server boots while mcpwall imports the rest of itself (see proxy.spawn).
            spawned = spawn(command)
        from mcpwall.app import OpsOptions, Upstream, run_http, run_stdio

        ops = OpsOptions(
            ns.events_dir,
            ns.log_args,
            ns.events_retention_days,
            ns.metrics_port,
            ns.metrics_bind,
            ns.otlp_endpoint,
        )
        upstream = Upstream(command, ns.upstream, headers, ns.server_name)
        if listener is not None:
            return run_http(ns.config, policy, upstream, state, ops, listener, ns.call_timeout)
        return run_stdio(
            ns.config, policy, upstream, state, ops, max_message, ns.call_timeout, spawned
        )
    except ServerStartError as exc:
        print(f"mcpwall: error: {exc}", file=sys.stderr)
        return EXIT_NO_SERVER
    finally:
        if spawned is not None and not spawned.adopted:
            spawned.abandon()


def _load_policy(path: str) -> Policy:
    from mcpwall.policy import PolicyInvalid, load_policy

    try:
        return load_policy(path)
    except PolicyInvalid as exc:
        for error in exc.errors:
            print(f"{error}" + (f"\n    hint: {error.hint}" if error.hint else ""), file=sys.stderr)
        raise UserError(
            f"the policy {path} does not validate ({len(exc.errors)} error(s)); nothing was started"
        ) from None


def _headers(pairs: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for pair in pairs:
        name, colon, value = pair.partition(":")
        if not colon or not name.strip():
            raise UserError(f"--header must be 'Name: value', got {pair!r}")
        headers[name.strip()] = value.strip()
    return headers


def _listener(ns: argparse.Namespace, max_message: int) -> ListenerOptions:
    from mcpwall.proxy.http import ListenerOptions

    authenticator = None
    if ns.auth is not None:
        authenticator = _authenticator(ns)
    tokens: frozenset[str] = frozenset()
    if ns.auth_token_file:
        try:
            lines = Path(ns.auth_token_file).read_text().splitlines()
        except OSError as exc:
            raise UserError(f"cannot read --auth-token-file: {exc.strerror or exc}") from None
        tokens = frozenset(line.strip() for line in lines if line.strip())
        if not tokens:
            raise UserError(f"--auth-token-file {ns.auth_token_file} holds no token")
    return ListenerOptions(
        bind=ns.bind,
        port=ns.port,
        auth_tokens=tokens,
        allowed_hosts=tuple(ns.allowed_host),
        allowed_origins=tuple(ns.allowed_origin),
        session_header=ns.session_header,
        forward_headers=tuple(ns.forward_header),
        max_message=max_message,
        authenticator=authenticator,
    )


def _authenticator(ns: argparse.Namespace) -> Authenticator:
    from mcpwall.auth.options import parse_auth
    from mcpwall.auth.resource import Authenticator

    if ns.auth_token_file:
        raise UserError("--auth and --auth-token-file cannot be used together")
    if any(name.lower() == "authorization" for name in ns.forward_header):
        # The token was issued for mcpwall (its audience): passing it on would let the
        # server replay it anywhere that audience is accepted.
        raise UserError(
            "--auth tokens are never passed upstream: drop --forward-header Authorization"
        )
    try:
        return Authenticator(parse_auth(ns.auth))
    except ValueError as exc:
        raise UserError(str(exc)) from None
