"""`apify-jobs emulator`: serve the local stand-in for the Apify API until Ctrl-C."""

from __future__ import annotations

import argparse
import sys

from apify_jobs.emulator import Emulator, load_script
from apify_jobs.environment import Environment
from apify_jobs.errors import UsageError


def main(args: argparse.Namespace, env: Environment) -> int:
    script = load_script(args.script)
    try:
        emulator = Emulator(script, args.host, args.port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    print(f"apify-jobs emulator listening on {emulator.url} (a stand-in for the Apify API, not the platform)",
          flush=True)
    # `run` sends the token over plain http only to a loopback address: suggest one even when listening on all
    url = emulator.url.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://[::1]:")
    print(f"use it with: APIFY_API_BASE_URL={url} APIFY_TOKEN=any apify-jobs run ...", file=sys.stderr,
          flush=True)
    try:
        emulator.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.close()
    return 0
