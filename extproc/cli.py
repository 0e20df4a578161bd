"""Command line: `llm-gateway run | serve | render-envoy | mock-llm`."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Coroutine
from typing import Any

from pydantic import SecretStr, ValidationError

from extproc.config import DEV_GATEWAY_KEY, PID_FILE, Settings
from extproc.core.filewatch import FileWatch
from extproc.envoy_config import render
from extproc.gateway import Gateway, GatewayError
from extproc.keys import new_key
from extproc.restarts import EXIT_CONFIG
from extproc.stack import Stack, StackError


def _settings(args: argparse.Namespace | None = None) -> Settings:
    try:
        settings = Settings.from_env()
    except ValidationError as exc:
        # Name the variable, never echo values (they may be keys).
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
        sys.exit(f"llm-gateway: invalid configuration in {fields}: {exc.errors()[0]['msg']}")
    update: dict[str, object] = {}
    if args is not None and args.policy_config:
        update["policy_config"] = args.policy_config
    if args is not None and args.validate_streams:
        update["validate_streams"] = True
    if args is not None and args.port:
        update["extproc_port"] = args.port
    return settings.model_copy(update=update)


def _gateway(args: argparse.Namespace | None = None, exit_code: int = 1) -> Gateway:
    """The configuration, every file read and checked once: a mistake stops the start
    with its message before anything runs."""
    try:
        return Gateway.load(_settings(args))
    except GatewayError as exc:
        print(f"llm-gateway: {exc}", file=sys.stderr)
        sys.exit(exit_code)


class Terminated(Exception):
    """SIGTERM: drain, then stop (Ctrl-C stops at once)."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def _admin_lines(stack: Stack, generated: bool) -> str:
    key = stack.settings.gateway_admin_key
    if not stack.has_admin or key is None:
        return "  admin:       off (GATEWAY_ADMIN_PORT=0)\n"
    if not generated:  # the operator's own key is theirs to know, not ours to print
        return (
            f"  admin:       {stack.admin_url}/  (web view; key from GATEWAY_ADMIN_KEY)\n"
            f"  metrics:     {stack.admin_url}/metrics\n"
        )
    # The key rides in the URL's fragment, which the browser never sends to a server.
    return (
        f"  admin:       {stack.admin_url}/#key={key.get_secret_value()}  (web view)\n"
        f"  admin key:   {key.get_secret_value()}  (for this run; set GATEWAY_ADMIN_KEY)\n"
        f"  metrics:     {stack.admin_url}/metrics\n"
    )


def cmd_run(args: argparse.Namespace) -> int:
    """The whole stack in the foreground until Ctrl-C or SIGTERM."""
    gateway = _gateway(args)
    settings = gateway.settings
    generated = bool(settings.gateway_admin_port) and settings.gateway_admin_key is None
    if generated:
        # A key for this run only, printed below beside the gateway key.
        settings = settings.model_copy(
            update={"gateway_admin_key": SecretStr(secrets.token_urlsafe(24))}
        )
        gateway = dataclasses.replace(gateway, settings=settings)
    signal.signal(signal.SIGTERM, _terminate)
    # Ctrl-C stops it even when it was started with SIGINT ignored (a background job of
    # a script inherits that): as extproc serve does, the stack takes both signals.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # Reload orders wait until the stack runs (its loop below takes them).
    hangups: list[int] = []
    signal.signal(signal.SIGHUP, lambda signum, frame: hangups.append(signum))
    # The files as loaded: an edit while the stack starts is a change.
    watch = FileWatch([settings.policy_config or "", settings.keys_file or ""])
    stack = Stack(gateway, supervised=True)
    try:
        stack.start(timeout=args.timeout)
    except StackError as exc:
        print(f"llm-gateway: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Terminated):
        stack.stop()
        return 130
    keys = [k.get_secret_value() for k in settings.env_keys]
    key_hint = (
        DEV_GATEWAY_KEY
        if keys == [DEV_GATEWAY_KEY]
        else "(from GATEWAY_API_KEYS / GATEWAY_KEYS_FILE)"
    )
    upstreams = ", ".join(u.describe() for u in gateway.router.upstreams.values())
    print(
        f"\nLLM gateway ready on {stack.base_url}\n"
        f"  gateway key: {key_hint}\n"
        f"  upstreams:   {upstreams}\n"
        f"  policies:    {settings.policy_config or 'noop (POLICY_CONFIG / --policy-config)'}\n"
        f"  try: curl -s {stack.base_url}/v1/messages -H 'x-api-key: {key_hint}' "
        "-H 'content-type: application/json' "
        '-d \'{"model":"claude-sonnet-4-5","max_tokens":50,'
        '"messages":[{"role":"user","content":"Count to 3"}]}\'\n'
        f"{_admin_lines(stack, generated)}"
        "  Ctrl-C stops everything.\n",
        flush=True,
    )
    _write_pid_file()
    try:
        while True:
            dead = stack.supervise()
            if dead:
                print(f"llm-gateway: {dead}; stopping", file=sys.stderr)
                return 1
            if watch.changed(time.monotonic()):
                print("llm-gateway: configuration files changed: reloading", file=sys.stderr)
                hangups.append(signal.SIGHUP)
            if hangups:
                hangups.clear()
                result = stack.reload()
                state = "reloaded" if result.ok else "reload refused, nothing changed"
                print(f"llm-gateway: {state}: {result.message}", file=sys.stderr, flush=True)
            time.sleep(0.25)
    except KeyboardInterrupt:
        print("\nllm-gateway: stopping", file=sys.stderr)
        return 0
    except Terminated:
        # Signals from here on are ignored: a second SIGTERM must not cut the drain.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(
            f"llm-gateway: draining (open streams get up to {settings.drain_timeout_s:g}s)",
            file=sys.stderr,
            flush=True,
        )
        left = stack.drain()
        print(
            f"llm-gateway: drained ({max(left, 0)} streams ended early); stopping", file=sys.stderr
        )
        return 0
    finally:
        stack.stop()
        _remove_pid_file()


def _write_pid_file() -> None:
    """Where `llm-gateway reload` finds this gateway (beside the audit database)."""
    try:
        os.makedirs(os.path.dirname(PID_FILE), exist_ok=True)
        with open(PID_FILE, "w") as handle:
            handle.write(f"{os.getpid()}\n")
    except OSError as exc:
        print(f"llm-gateway: cannot write {PID_FILE}: {exc.strerror}", file=sys.stderr)


def _remove_pid_file() -> None:
    try:
        with open(PID_FILE) as handle:
            if handle.read().strip() == str(os.getpid()):
                os.remove(PID_FILE)
    except OSError:
        pass


def cmd_drain(args: argparse.Namespace) -> int:
    """A Kubernetes preStop hook: drain the Envoy beside this process (its admin
    interface on 127.0.0.1) and wait for open streams, up to DRAIN_TIMEOUT_S."""
    from extproc.envoy_config.bootstrap import STAT_PREFIX
    from extproc.processes import start_drain, wait_idle

    settings = _settings(args)
    timeout = settings.drain_timeout_s if args.timeout is None else args.timeout
    try:
        start_drain(settings.admin_port)
        left = wait_idle(settings.admin_port, STAT_PREFIX, timeout)
    except (OSError, ValueError) as exc:
        where = f"127.0.0.1:{settings.admin_port}"
        print(f"llm-gateway: cannot drain Envoy on {where}: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.done_file:
            # Tells the Envoy container's own preStop hook that it may stop (after the
            # workers' last words): also when the drain failed, or Envoy would wait
            # out the whole grace period beside a dead gateway.
            with open(args.done_file, "w") as handle:
                handle.write("drained\n")
    print(f"drained: {left} requests still open after {timeout:g}s" if left else "drained")
    return 0


def cmd_usage(args: argparse.Namespace) -> int:
    """Each caller's use of its limits in the current windows."""
    from extproc.usage_cli import fetch_usage, format_usage

    gateway = _gateway(args)
    try:
        report = fetch_usage(gateway, args.caller)
    except RuntimeError as exc:
        print(f"llm-gateway: {exc}", file=sys.stderr)
        return 1
    if args.caller and not report:
        print(f"llm-gateway: no caller {args.caller!r} with limits", file=sys.stderr)
        return 1
    print(format_usage(report), end="")
    return 0


def _is_gateway(pid: int) -> bool:
    """Whether `pid` runs this program (where /proc says; elsewhere, assumed)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except FileNotFoundError:
        return not os.path.isdir("/proc")  # no such process, or no /proc to ask
    except OSError:
        return True
    return any(b"extproc" in arg or b"llm-gateway" in arg for arg in argv)


def cmd_reload(args: argparse.Namespace) -> int:
    """Check the files, then tell the running `llm-gateway run` (or `serve`) to reload."""
    gateway = _gateway(args)  # a bad file stops here, saying what is wrong
    try:
        gateway.checked()
    except GatewayError as exc:
        sys.exit(f"llm-gateway: {exc}")
    pid = args.pid
    if pid is None:
        try:
            with open(PID_FILE) as handle:
                pid = int(handle.read().strip())
        except (OSError, ValueError):
            print(
                f"llm-gateway: no running gateway found ({PID_FILE} is missing): "
                "start one with `llm-gateway run`, or pass --pid",
                file=sys.stderr,
            )
            return 1
    if not _is_gateway(pid):
        # A pid file left by a gateway that crashed may name another process now, and
        # SIGHUP ends most processes.
        print(
            f"llm-gateway: process {pid} is not a running gateway ({PID_FILE} is stale?)",
            file=sys.stderr,
        )
        return 1
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        print(f"llm-gateway: no process {pid}: is the gateway running?", file=sys.stderr)
        return 1
    except PermissionError:
        print(f"llm-gateway: not allowed to signal process {pid}", file=sys.stderr)
        return 1
    chains = ", ".join(sorted({"default", *gateway.policy_file.chains}))
    print(f"configuration checked (chains: {chains}); reload sent to process {pid}")
    return 0


def _run_loop(main: Coroutine[Any, Any, None], what: str) -> int:
    try:
        try:
            import uvloop
        except ImportError:
            asyncio.run(main)
        else:
            uvloop.run(main)
    except OSError as exc:
        print(f"llm-gateway: {what}: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Only the ext_proc gRPC server (Envoy and the provider run elsewhere), with the
    admin server beside it unless --no-admin."""
    from extproc.serve import serve_forever

    # A reload order that comes while the process starts must not end it (SIGHUP's
    # default); the server takes SIGHUP once it runs, with the files as they are then.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # A refused configuration exits EX_CONFIG: the supervisor waits for a fix rather
    # than counting a crash.
    gateway = _gateway(args, exit_code=EXIT_CONFIG)
    return _run_loop(serve_forever(gateway, admin=not args.no_admin), "ext_proc server")


def cmd_admin(args: argparse.Namespace) -> int:
    """Only the admin server: metrics, admin API and web view over the audit store."""
    from extproc.serve import serve_admin_forever

    return _run_loop(serve_admin_forever(_settings(args)), "admin server")


def cmd_new_key(args: argparse.Namespace) -> int:
    """A new gateway key: give the key to the caller, put the hash in the keys file."""
    key, sha = new_key()
    print(f"key (give this to the caller, it is shown once): {key}")
    print("keys file entry:")
    print(f"  - name: {args.name}\n    key_sha256: {sha}\n    chain: default")
    return 0


def cmd_render_envoy(args: argparse.Namespace) -> int:
    # For any policy file and any keys: responses go through ext_proc (a shipped file
    # must serve whichever policies its deployment names), and providers without a URL
    # get the real API and the mock, ext_proc picking by whether it holds the key, so
    # the file never goes stale when keys are added or removed.
    print(render(_gateway(args), response_body=True, any_keys=True), end="")
    return 0


def _policy_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--policy-config", metavar="PATH", help="policy YAML file (default: POLICY_CONFIG)"
    )
    parser.add_argument(
        "--validate-streams",
        action="store_true",
        help="check every response stream's invariants and log violations",
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    parser = argparse.ArgumentParser(prog="llm-gateway", description=__doc__)
    # Flags only some commands take: every command sees them, unset.
    parser.set_defaults(policy_config=None, validate_streams=False, port=0)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run mock LLM (if needed), ext_proc and Envoy")
    run.add_argument("--timeout", type=float, default=30.0, help="start-up deadline, seconds")
    run.set_defaults(func=cmd_run)
    _policy_flags(run)
    serve = sub.add_parser("serve", help="run only the ext_proc gRPC server")
    serve.add_argument("--port", type=int, default=0, help="port (default EXTPROC_PORT)")
    serve.add_argument("--no-admin", action="store_true", help="no admin server in this process")
    serve.set_defaults(func=cmd_serve)
    admin = sub.add_parser("admin", help="run only the admin server (metrics, API, web view)")
    admin.set_defaults(func=cmd_admin)
    _policy_flags(serve)
    nk = sub.add_parser("new-key", help="print a new gateway key and its keys-file entry")
    nk.add_argument("--name", default="new-caller", help="caller name for the entry")
    nk.set_defaults(func=cmd_new_key)
    rl = sub.add_parser("reload", help="check the files and tell a running gateway to reload")
    rl.add_argument(
        "--pid", type=int, default=None, help=f"process to signal (default: {PID_FILE})"
    )
    rl.set_defaults(func=cmd_reload)
    _policy_flags(rl)
    dr = sub.add_parser("drain", help="drain the Envoy beside this process; wait for streams")
    dr.add_argument("--timeout", type=float, default=None, help="seconds (default DRAIN_TIMEOUT_S)")
    dr.add_argument("--done-file", default=None, help="a file to write once drained")
    dr.set_defaults(func=cmd_drain)
    us = sub.add_parser("usage", help="print each caller's use of its limits and budgets")
    us.add_argument("--caller", default=None, help="only this caller")
    us.set_defaults(func=cmd_usage)
    _policy_flags(us)
    rend = sub.add_parser("render-envoy", help="print the Envoy bootstrap for these settings")
    rend.set_defaults(func=cmd_render_envoy)
    mock = sub.add_parser("mock-llm", help="run only the mock LLM", add_help=False)
    mock.set_defaults(func=None)
    args, rest = parser.parse_known_args(argv)
    if args.command == "mock-llm":
        from extproc.mock_llm.__main__ import main as mock_main

        return int(mock_main(rest) or 0)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
