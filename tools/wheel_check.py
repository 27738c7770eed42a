"""Check the built wheel as a user would get it: ``python tools/wheel_check.py dist``.

1. The newest ``ferroptim-*.whl`` in the directory: its tags (from ``WHEEL``), ``auditwheel show``
   (its manylinux policy; refused unless the wheel is manylinux and abi3), and a stripped
   extension (no ``.symtab`` section).
2. A fresh virtual environment with only numpy and the wheel (``pip install <wheel>``).
3. There, from a directory outside the source tree, the ported training script of
   ``examples/torch_port`` for a few epochs; it must import ferroptim from the venv and learn.

Exits non-zero with a message on the first failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import sys
import ferroptim, train_ferroptim
assert sys.prefix in ferroptim.__file__, ferroptim.__file__
accuracy = train_ferroptim.main(epochs=8, path="best.npz")
assert accuracy > 0.8, accuracy
print("wheel-check training OK:", ferroptim.__file__, ferroptim.simd_level())
"""


def run(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise SystemExit(f"wheel-check: {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def wheel_tags(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/WHEEL"))
        lines = archive.read(meta).decode().splitlines()
    return [line.split(": ", 1)[1] for line in lines if line.startswith("Tag: ")]


def extension_is_stripped(wheel: Path, scratch: Path) -> bool:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".so"))
        path = Path(archive.extract(name, scratch))
    data = path.read_bytes()
    return b".symtab" not in data


def main(dist: str) -> None:
    wheels = sorted(Path(dist).glob("ferroptim-*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        raise SystemExit(f"wheel-check: no ferroptim wheel in {dist} (run `make wheel`)")
    wheel = wheels[-1]
    tags = wheel_tags(wheel)
    print(f"wheel: {wheel.name}\ntags: {', '.join(tags)}")
    if not all("abi3" in t and "manylinux" in t for t in tags):
        raise SystemExit(f"wheel-check: expected manylinux abi3 tags, got {tags}")
    auditwheel = shutil.which("auditwheel") or str(Path(sys.executable).parent / "auditwheel")
    if Path(auditwheel).exists():
        print(run(auditwheel, "show", str(wheel)).stdout.strip())
    with tempfile.TemporaryDirectory(prefix="ferroptim-wheel-") as tmp:
        scratch = Path(tmp)
        if not extension_is_stripped(wheel, scratch / "unzipped"):
            raise SystemExit("wheel-check: the extension module still has a symbol table")
        print("extension module: stripped")
        venv = scratch / "venv"
        run(sys.executable, "-m", "venv", str(venv))
        python = str(venv / "bin" / "python")
        run(python, "-m", "pip", "install", "--quiet", str(wheel))
        installed = run(python, "-m", "pip", "list", "--format=freeze").stdout.split()
        print("venv packages:", " ".join(installed))
        unexpected = [
            p
            for p in installed
            if p.split("==")[0].lower() not in {"ferroptim", "numpy", "pip", "setuptools"}
        ]
        if unexpected:
            raise SystemExit(f"wheel-check: the wheel pulled more than numpy: {unexpected}")
        work = scratch / "work"
        work.mkdir()
        for name in ("data.py", "train_ferroptim.py"):
            shutil.copy(ROOT / "examples" / "torch_port" / name, work / name)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        print(run(python, "-c", SCRIPT, cwd=work, env=env).stdout.strip())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "dist")
