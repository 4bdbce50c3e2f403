"""``python -m engine.remote_emulator [--port N] [--rate R] [--token T] [--fail-every N]``:
the emulator in the foreground, on 127.0.0.1, until interrupted."""

from __future__ import annotations

import argparse
import threading

from engine.remote_emulator.service import Emulator


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m engine.remote_emulator")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--rate", type=float, default=1000.0, help="records per second")
    parser.add_argument("--fail-every", type=int, default=0, help="every Nth record fails")
    parser.add_argument(
        "--token", action="append", default=[], help="an accepted bearer token (default: any)"
    )
    args = parser.parse_args()
    emu = Emulator(
        tokens=set(args.token), rate=args.rate, fail_every=args.fail_every, port=args.port
    )
    emu.start()
    print(f"remote emulator on {emu.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()


if __name__ == "__main__":
    main()
