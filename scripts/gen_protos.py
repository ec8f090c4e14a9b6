"""Regenerate the Python code for proto/transfer/v1, or check that it is fresh.

    python scripts/gen_protos.py          # rewrite transfer/v1/*_pb2*.py(i)
    python scripts/gen_protos.py --check  # exit 1 if the committed code is stale

The generated files are committed and never edited by hand. They depend on
the grpcio-tools version pinned in pyproject.toml; --check regenerates with the
installed one, so CI fails when either the protos or the pin changed without
regenerating.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE_DIR = Path("transfer") / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def _generate(out_root: Path) -> list[Path]:
    """Run protoc on every .proto of the package; return the files written."""
    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    protos = sorted((PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {PROTO_ROOT / PACKAGE_DIR}")
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *(str(p.relative_to(PROTO_ROOT)) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(
        p.relative_to(out_root) for p in (out_root / PACKAGE_DIR).iterdir() if p.name.endswith(GENERATED_SUFFIXES)
    )


def _committed() -> list[Path]:
    return sorted(p.relative_to(ROOT) for p in (ROOT / PACKAGE_DIR).iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if generated code is stale")
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / PACKAGE_DIR).mkdir(parents=True)
        fresh = _generate(out)
        if ns.check:
            stale = [
                str(p) for p in fresh if not (ROOT / p).exists() or not filecmp.cmp(out / p, ROOT / p, shallow=False)
            ]
            extra = [str(p) for p in _committed() if p not in fresh]
            if stale or extra:
                print("generated code is stale; run: python scripts/gen_protos.py", file=sys.stderr)
                for name in stale:
                    print(f"  differs or missing: {name}", file=sys.stderr)
                for name in extra:
                    print(f"  no longer generated: {name}", file=sys.stderr)
                return 1
            print(f"generated code is fresh ({len(fresh)} files)")
            return 0
        for p in _committed():
            if p not in fresh:
                (ROOT / p).unlink()
        for p in fresh:
            shutil.copyfile(out / p, ROOT / p)
        print(f"wrote {len(fresh)} files under {PACKAGE_DIR}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
