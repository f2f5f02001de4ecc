"""``nanofleet-tuf-client``: the TUF client-conformance command line over the agent's
own :class:`~agent.ota.tuf_client.TufClient` (same code path, no second client).

    nanofleet-tuf-client --metadata-dir D init ROOT_FILE
    nanofleet-tuf-client --metadata-dir D --metadata-url U refresh
    nanofleet-tuf-client --metadata-dir D --metadata-url U --target-name T [--target-name T2]
        --target-base-url B --target-dir TD download

Exit 0 on success, 1 on failure (the reason goes to stderr). Metadata is cached
in D as root.json, timestamp.json, snapshot.json, targets.json (plus delegated
roles). Time is the wall clock, so the suite can run it under faketime.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from agent.ota.errors import UpdateRefused
from agent.ota.tuf_client import TufClient
from contract.reasons import OtaReason


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nanofleet-tuf-client",
                                description="TUF conformance client (nanofleet agent code path)")
    p.add_argument("--metadata-dir", required=True, type=Path,
                   help="where trusted metadata is kept")
    p.add_argument("--metadata-url", help="base URL of the repository metadata")
    p.add_argument("--target-name", action="append", default=[],
                   help="target path to download (repeatable)")
    p.add_argument("--target-base-url", help="base URL of the repository targets")
    p.add_argument("--target-dir", type=Path, help="where downloaded targets go")
    sub = p.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="trust ROOT_FILE as the initial root")
    init.add_argument("root_file", type=Path)
    sub.add_parser("refresh", help="update top-level metadata")
    sub.add_parser("download", help="download the --target-name targets")
    return p


def _client(args: argparse.Namespace) -> TufClient:
    if not args.metadata_url:
        raise UpdateRefused(OtaReason.NOT_INITIALIZED, "--metadata-url is required")
    # No embedded root here: the root stored by `init` (and the rotations ngclient
    # verified since) is the trust anchor, as the conformance protocol intends.
    return TufClient(args.metadata_dir, args.metadata_url, trusted_root=None,
                     target_base_url=args.target_base_url)


def run(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "init":
            TufClient.initialize(args.metadata_dir, args.root_file.read_bytes())
        elif args.command == "refresh":
            _client(args).refresh()
        else:
            if not args.target_name or args.target_base_url is None or args.target_dir is None:
                raise UpdateRefused(OtaReason.NOT_FOUND, "download needs --target-name, "
                                    "--target-base-url and --target-dir")
            client = _client(args)
            client.refresh()
            for name in args.target_name:
                target = client.get_target(name)
                if target is None:
                    raise UpdateRefused(OtaReason.NOT_FOUND,
                                        f"{name}: no signed target of that name")
                client.download_target(target, args.target_dir, attempts=1)
    except UpdateRefused as exc:
        print(f"nanofleet-tuf-client: refused: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"nanofleet-tuf-client: {exc}", file=sys.stderr)
        return 1
    return 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
