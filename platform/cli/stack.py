"""``spectralearth stack``: the local object store and dask-gateway on loopback."""

from __future__ import annotations

import json
import sys

from spectralearth.platform.cli._common import HelpFormatter, print_summary

DESCRIPTION = """\
Run the platform's services on this machine, on 127.0.0.1 only:

  SeaweedFS   an S3-compatible object store (bucket s3://spectralearth)
  dask-gateway  a gateway server that starts dask clusters as local processes,
              behind HTTP basic auth with a generated password

Actions:
  up      start both (a second `up` says the stack is already running)
  status  which services run and answer, their endpoints (no secrets)
  env     print `export NAME=VALUE` lines that point S3 clients and
          dask-gateway clients at the stack; the only action that prints
          secrets, and only to standard output:
              eval "$(spectralearth stack env)"
  down    stop everything `up` started, the gateway's clusters included

State (pids, ports), generated credentials (mode 0600), data and logs live in
one folder: --data-dir, else $SPECTRALEARTH_STACK_DIR, else ./.stack.
The servers are configured from the templates in infra/local/.

Exit status: 0 success; 1 failure (status: the stack is not fully running).

Example:
  spectralearth stack up
  eval "$(spectralearth stack env)"
  spectralearth index ./archive --catalog "$SPECTRALEARTH_STACK_BUCKET/catalog" --cluster gateway --workers 2
  spectralearth stack down
"""


def register(sub) -> None:
    p = sub.add_parser("stack", help="local S3 (SeaweedFS) and dask-gateway on loopback", description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("action", choices=("up", "status", "env", "down"), help="what to do")
    p.add_argument("--data-dir", metavar="DIR", default=None, help="stack folder (default: $SPECTRALEARTH_STACK_DIR or ./.stack)")
    p.add_argument("--json", action="store_true", help="status/up: print JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from spectralearth.platform.stack import LocalStack, StackError

    stack = LocalStack(args.data_dir)
    try:
        if args.action == "up":
            say = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
            state, started = stack.up(progress=say)
            return _print_status(stack, args, title="started" if started else "already running")
        if args.action == "status":
            return _print_status(stack, args, title="status")
        if args.action == "env":
            sys.stdout.write(stack.shell_exports())
            return 0
        stopped = stack.down()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    except StackError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1


def _print_status(stack, args, *, title: str) -> int:
    status = stack.status()
    if args.json:
        print(json.dumps(status, indent=2))
        return 0 if status["running"] else 1
    if not status["services"]:
        print(f"the stack in {status['data_dir']} is not running")
        return 1
    rows = {"folder": status["data_dir"]}
    for name, s in status["services"].items():
        state = "running" if s["healthy"] else ("not answering" if s["alive"] else "stopped")
        rows[name] = f"{state} (pid {s['pid']})  {s['endpoint']}"
        if name == "gateway":
            rows["gateway proxy"] = s["proxy_address"]
            rows["gateway cluster processes"] = s["clusters"]
        if name == "seaweed":
            rows["bucket"] = s["bucket"]
    print_summary(f"stack {title}", rows)
    if status["running"]:
        print('\nconfigure a shell with:  eval "$(spectralearth stack env' + (f' --data-dir {status["data_dir"]}' if args.data_dir else "") + ')"')
    return 0 if status["running"] else 1
