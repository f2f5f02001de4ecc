"""``nanofleet keys init|rotate`` and ``nanofleet repo init``: the key ceremonies.

These run where the offline keys are brought together (``repo init`` and
``keys rotate`` also need the repository directory: the fleet server's, or a copy
that is synced back). Offline key files may be encrypted (``--passphrase-env``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from securesystemslib.signer import Key

from fleet_server.config import load_config
from fleet_server.repository.keys import (
    ONLINE_ROLES,
    generate_key,
    generate_role_keys,
    load_public_key,
    load_signer,
    public_key_path,
)
from fleet_server.repository.metadata_store import OnlineSigners
from fleet_server.repository.repo import Repository
from fleet_server.repository.rotation import rotate_root
from fleet_server.repository.storage import METADATA_DIR

EXIT_OK = 0


def passphrase(args: argparse.Namespace) -> bytes | None:
    name = getattr(args, "passphrase_env", None)
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        raise ValueError(f"--passphrase-env {name}: the environment variable is not set")
    return value.encode()


def cmd_keys_init(args: argparse.Namespace) -> int:
    key_dir: Path = args.dir
    secret = passphrase(args)
    if secret is None:
        files = generate_role_keys(key_dir, root_keys=args.root_keys)
    else:  # offline keys encrypted; online ones must load unattended on the server
        key_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(key_dir, 0o700)
        files = {"root": [key_dir / f"root-{i}.pem" for i in range(1, args.root_keys + 1)],
                 "targets": [key_dir / "targets.pem"]}
        for p in files["root"] + files["targets"]:
            generate_key(p, secret)
        for role in ONLINE_ROLES:
            files[role] = [key_dir / f"{role}.pem"]
            generate_key(files[role][0])
    print(f"generated Ed25519 keys in {key_dir}:")
    print("  OFFLINE - move off the server after `nanofleet repo init`:")
    for p in files["root"]:
        print(f"    {p.name:16s} root key (keep each one in a different safe place)")
    print(f"    {'targets.pem':16s} the operators' signing key (operator machine only)")
    print("  ONLINE - stay on the fleet server:")
    for role in ONLINE_ROLES:
        print(f"    {role + '.pem':16s} {role} role")
    threshold = min(2, args.root_keys)
    print(f"next: nanofleet repo init --config SERVER.toml --keys {key_dir} "
          f"--root-threshold {threshold}")
    return EXIT_OK


def _copy_online_keys(src: Path, dest: Path) -> None:
    if src.resolve() == dest.resolve():
        return
    dest.mkdir(parents=True, exist_ok=True)
    os.chmod(dest, 0o700)
    for role in ONLINE_ROLES:
        key = src / f"{role}.pem"
        if not key.exists():
            continue
        for path in (key, public_key_path(key)):
            target = dest / path.name
            if target.exists():
                raise ValueError(f"{target} already exists; refusing to overwrite a key")
            shutil.copyfile(path, target)
            os.chmod(target, 0o600 if path == key else 0o644)


def cmd_repo_init(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    key_dir: Path = args.keys
    secret = passphrase(args)
    roots = sorted(key_dir.glob("root-*.pem"))
    roots = [p for p in roots if not p.name.endswith(".pub.pem")]
    if not roots:
        raise ValueError(f"{key_dir}: no root-*.pem keys (run nanofleet keys init first)")
    online = OnlineSigners.from_key_dir(key_dir)
    repo = Repository.create(
        config.repo_path, root_signers=[load_signer(p, secret) for p in roots],
        root_threshold=args.root_threshold,
        targets_signers=[load_signer(key_dir / "targets.pem", secret)], online=online,
        expiry=config.expiry)
    _copy_online_keys(key_dir, config.keys_path)
    root_copy = key_dir / "root.json"
    root_copy.write_bytes(repo.root_bytes())
    print(f"created the TUF repository in {config.repo_path} (root v1: {len(roots)} root keys, "
          f"threshold {args.root_threshold}; delta role "
          f"{'enabled' if online.deltas else 'disabled: no deltas.pem'})")
    print(f"online keys for the server: {config.keys_path}")
    print(f"trusted root for devices and operators: {root_copy} (provision devices with it)")
    print(f"  its pin: --root-sha256 {hashlib.sha256(repo.root_bytes()).hexdigest()} (for "
          "nanofleet-agent enroll on devices that do not carry the file)")
    print("NOW move these files off this machine to offline storage:")
    for p in roots:
        print(f"  {p}")
    print(f"  {key_dir / 'targets.pem'}   (to the operators' machine, with root.json)")
    return EXIT_OK


def _key_files(paths: list[Path] | None) -> list[Path]:
    return list(paths or [])


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    secret = passphrase(args)
    repo = Repository(config.repo_path, OnlineSigners.from_key_dir(config.keys_path),
                      config.expiry)
    current = repo.root().signed
    signers = [load_signer(p, secret) for p in _key_files(args.sign)]
    new_files = _key_files(args.new_root_key)
    if args.generate_root:
        out: Path = args.generate_dir or args.config.parent / "new-root-keys"
        for i in range(1, args.generate_root + 1):
            path = out / f"root-v{current.version + 1}-{i}.pem"
            signers.append(generate_key(path, secret))
            new_files.append(path)
        print(f"generated {args.generate_root} new root keys in {out} (move them offline)")
    for path in new_files:  # a new key given as a private file signs too
        if "PRIVATE KEY" in path.read_text(errors="replace"):
            signers.append(load_signer(path, secret))
    new_keys: list[Key] = [load_public_key(p) for p in new_files] or [
        current.get_key(k) for k in current.roles["root"].keyids]
    threshold = args.threshold or (current.roles["root"].threshold if not new_files
                                   else min(len(new_keys), current.roles["root"].threshold))
    role_keys: dict[str, Any] = {}
    targets_signers = []
    if args.targets_key:
        targets_signer = load_signer(args.targets_key, secret)
        role_keys["targets"] = [targets_signer.public_key]
        targets_signers.append(targets_signer)
    version = rotate_root(repo, new_keys, threshold, signers, signers, role_keys=role_keys,
                          targets_signers=targets_signers)
    out_root = args.root_out or args.config.parent / "root.json"
    out_root.write_bytes(repo.root_bytes())
    print(f"published root v{version}: {len(new_keys)} root keys, threshold {threshold}"
          + ("; targets key replaced (targets re-signed)" if args.targets_key else ""))
    print(f"devices provisioned with any earlier root follow the chain "
          f"({config.repo_path / METADATA_DIR}/N.root.json); newest root copied to {out_root}")
    print(f"  pin for devices enrolled from now on: --root-sha256 "
          f"{hashlib.sha256(repo.root_bytes()).hexdigest()}")
    return EXIT_OK


def add_key_commands(sub: Any) -> None:
    keys = sub.add_parser("keys", help="key ceremonies: generate keys, rotate root")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="{init,rotate}", required=True)
    init = keys_sub.add_parser("init", help="generate root (offline), targets (operator) and "
                               "online snapshot/timestamp/deltas keys")
    init.add_argument("--dir", type=Path, required=True, help="directory for the key files")
    init.add_argument("--root-keys", type=int, default=3, help="number of root keys (default 3)")
    init.add_argument("--passphrase-env", metavar="VAR",
                      help="encrypt the offline keys with the passphrase in this env variable")
    init.set_defaults(func=cmd_keys_init)

    rot = keys_sub.add_parser("rotate", help="publish root N+1 signed by a threshold of the "
                              "old and of the new root keys")
    rot.add_argument("--config", type=Path, required=True, help="server config (repository)")
    rot.add_argument("--sign", type=Path, action="append", metavar="KEY.pem",
                     help="a root private key that signs (old and/or new); repeat")
    rot.add_argument("--new-root-key", type=Path, action="append", metavar="KEY",
                     help="a key of the new root set (.pem or .pub.pem); repeat. Default: "
                     "keep the current root keys")
    rot.add_argument("--generate-root", type=int, metavar="N",
                     help="generate N new root keys as the new root set (they sign too)")
    rot.add_argument("--generate-dir", type=Path, help="where --generate-root writes keys")
    rot.add_argument("--threshold", type=int, help="new root threshold")
    rot.add_argument("--targets-key", type=Path, metavar="KEY.pem",
                     help="replace the operators' targets key with this one")
    rot.add_argument("--root-out", type=Path, help="write the new root.json here")
    rot.add_argument("--passphrase-env", metavar="VAR", help="passphrase of encrypted keys")
    rot.set_defaults(func=cmd_keys_rotate)

    repo = sub.add_parser("repo", help="create the signed repository")
    repo_sub = repo.add_subparsers(dest="repo_command", metavar="{init}", required=True)
    rinit = repo_sub.add_parser("init", help="create the TUF repository in the server's data "
                                "dir (root v1 signed by all root keys)")
    rinit.add_argument("--config", type=Path, required=True, help="server config")
    rinit.add_argument("--keys", type=Path, required=True, help="key directory from keys init")
    rinit.add_argument("--root-threshold", type=int, default=2,
                       help="root keys needed to sign a new root (default 2)")
    rinit.add_argument("--passphrase-env", metavar="VAR", help="passphrase of encrypted keys")
    rinit.set_defaults(func=cmd_repo_init)
