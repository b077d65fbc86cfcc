"""The ``mcpwall`` command: the proxy by default, and its subcommands.

Each subcommand lives in its own module, imported only when it runs, so that starting
the proxy (the command an MCP client spawns) loads only what the proxy needs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mcpwall import __version__

if TYPE_CHECKING:
    from mcpwall.app import StateOptions

SUBCOMMANDS = {
    "validate": ("mcpwall.cli.validate", "check a policy file and report every error"),
    "check": ("mcpwall.cli.check", "evaluate one tool call against a policy, without a server"),
    "status": ("mcpwall.cli.status", "instances, calls and denials, from the audit logs"),
    "demo": ("mcpwall.cli.demo", "watch mcpwall judge a scripted agent session"),
}

EXIT_USAGE = 2

_PROXY_USAGE = """mcpwall -c POLICY [options] -- COMMAND [ARGS...]
       mcpwall {validate,check,status,demo} ..."""

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
    debug = "--log-level" in args and "debug" in args
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
    from mcpwall.app import StateOptions
    from mcpwall.state import check_dsn

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


def _seconds(text: str) -> float:
    """A number of seconds above zero, for argparse."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"not a number of seconds above zero: {text!r}")
    return value


def _proxy(argv: list[str]) -> int:
    if "--" in argv:
        split = argv.index("--")
        own, command = argv[:split], argv[split + 1 :]
    else:
        own, command = argv, []
    parser = argparse.ArgumentParser(
        prog="mcpwall",
        usage=_PROXY_USAGE,
        epilog=_PROXY_EPILOG,
        description="A policy firewall for MCP: every tools/call is checked against a YAML "
        "policy before it reaches the server.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-c", "--config", metavar="POLICY", help="the policy YAML file")
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warn", "warning", "error"),
        default="info",
        help="what mcpwall logs to stderr (default: info)",
    )
    parser.add_argument(
        "--transport", choices=("stdio",), default="stdio", help="how the client connects (stdio)"
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
    ns = parser.parse_args(own)
    if not ns.config:
        parser.print_usage(sys.stderr)
        raise UserError("a policy is required: -c POLICY")
    if not command:
        raise UserError(
            "no server command: put it after --, e.g. mcpwall -c policy.yaml "
            "-- npx -y some-mcp-server"
        )
    setup_logging(ns.log_level)

    from mcpwall.app import OpsOptions, run_stdio
    from mcpwall.policy import PolicyInvalid
    from mcpwall.proxy.stdio import DEFAULT_MAX_MESSAGE, ServerStartError

    state = state_options(ns)
    ops = OpsOptions(
        ns.events_dir, ns.log_args, ns.events_retention_days, ns.metrics_port, ns.metrics_bind
    )
    try:
        return run_stdio(
            ns.config,
            command,
            state,
            ops,
            ns.max_message_size or DEFAULT_MAX_MESSAGE,
            ns.call_timeout,
        )
    except PolicyInvalid as exc:
        for error in exc.errors:
            print(f"{error}" + (f"\n    hint: {error.hint}" if error.hint else ""), file=sys.stderr)
        raise UserError(
            f"the policy {ns.config} does not validate "
            f"({len(exc.errors)} error(s)); nothing was started"
        ) from None
    except ServerStartError as exc:
        print(f"mcpwall: error: {exc}", file=sys.stderr)
        return 127
