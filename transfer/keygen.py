"""A production node key: the log key that signs checkpoints, the seal key, or the key of the node's witness.

    python -m transfer.keygen --name hocba.moet.gov.vn/province/01/log --out /etc/hocba/keys --stem log
    python -m transfer.keygen --name hocba.moet.gov.vn/province/01/seal --out DIR --stem seal --from-pem seal.pem
    python -m transfer.keygen --name hocba.moet.gov.vn/province/01/witness --out DIR --stem witness

Writes <stem>.key (the signed-note private key, mode 0600, never over an
existing file) and <stem>.vkey (the verifier key to publish), and prints the
vkey. `--from-pem` takes an Ed25519 private key made elsewhere (e.g. `openssl
genpkey -algorithm ed25519`) instead of generating one. See docs/operations.md,
Log keys. The log key's name should be the log's origin (C2SP tlog-checkpoint).
A witness key ([witness] key_file) is the same kind of file; its <stem>.vkey is
the cosignature/v1 verifier key (type 0x04) that logs and clients configure.
Each key has one purpose: never use one file for two of them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from transfer.ledger.note import NoteError, cosignature_signer, generate_key, skey_for


def write_key(out: Path, stem: str, name: str, private_key: ed25519.Ed25519PrivateKey | None = None) -> str:
    """Write <stem>.key (0600, refusing to replace one) and <stem>.vkey; return the vkey."""
    skey, vkey = generate_key(name) if private_key is None else skey_for(name, private_key)
    if stem == "witness":  # a witness's key is read as a cosigner: its vkey is type 0x04
        vkey = cosignature_signer(skey).vkey
    fd = os.open(out / f"{stem}.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(skey + "\n")
    (out / f"{stem}.vkey").write_text(vkey + "\n", encoding="utf-8")
    return vkey


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m transfer.keygen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="the key's name: the log's origin for the log key")
    parser.add_argument("--out", type=Path, required=True, help="directory to write <stem>.key and <stem>.vkey into")
    parser.add_argument("--stem", required=True, choices=["log", "seal", "witness"], help="which key")
    parser.add_argument("--from-pem", type=Path, help="an Ed25519 private key in PEM (PKCS#8), e.g. from openssl")
    ns = parser.parse_args(argv)
    try:
        key = None
        if ns.from_pem is not None:
            loaded = serialization.load_pem_private_key(ns.from_pem.read_bytes(), password=None)
            if not isinstance(loaded, ed25519.Ed25519PrivateKey):
                raise ValueError(f"{ns.from_pem}: not an Ed25519 private key")
            key = loaded
        vkey = write_key(ns.out, ns.stem, ns.name, key)
    except FileExistsError:
        print(f"keygen: {ns.out / (ns.stem + '.key')} exists; not replaced", file=sys.stderr)
        return 2
    except (OSError, ValueError, TypeError, NoteError) as exc:
        print(f"keygen: {exc}", file=sys.stderr)
        return 2
    print(vkey)
    return 0


if __name__ == "__main__":
    sys.exit(main())
