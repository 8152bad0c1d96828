"""``python -m tools.devhost [--host 127.0.0.1] [--port 7071]``: serve ``function_app:app`` like ``func start``.

Settings from ``local.settings.json`` are loaded before the app is imported (module-level code sees them).
A bind address beyond loopback needs ``--function-key`` and ``--master-key`` (or DEVHOST_FUNCTION_KEY /
DEVHOST_MASTER_KEY). Timers run on their schedules unless ``--no-timers``; queue triggers poll the storage
queues of their connection setting. Exit 2 with one line when it cannot start (bad option, port in use, no keys).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.devhost", description=__doc__.splitlines()[0])
    parser.add_argument("--app", default="function_app:app", help="module:attribute of the FunctionApp")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--settings", default="local.settings.json")
    parser.add_argument("--function-key", default=os.environ.get("DEVHOST_FUNCTION_KEY"))
    parser.add_argument("--master-key", default=os.environ.get("DEVHOST_MASTER_KEY"))
    parser.add_argument("--no-timers", action="store_true", help="do not run timers on their schedules")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", stream=sys.stdout)
    sys.path.insert(0, str(Path.cwd()))

    from shared.settings import load_local_settings
    from tools.devhost.host import DevHost, HostConfigError, Keys

    try:
        load_local_settings(args.settings)  # before the import, so module-level code sees the settings
        module, _, attribute = args.app.partition(":")
        app = getattr(importlib.import_module(module), attribute or "app")
        keys = Keys(function=args.function_key, master=args.master_key)
        host = DevHost(app, args.host, args.port, keys=keys, settings_file=None, timers=not args.no_timers).start()
    except (HostConfigError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    print(host.describe(), flush=True)
    try:
        import threading

        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
