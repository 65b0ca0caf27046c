"""Build the course's modern-English sentence set from the Python documentation (PSF licence).

Run at build time only (the course never downloads anything at run time):

    python scripts/build_modern_corpus.py                  # fetches Debian's python3.11-doc with apt
    python scripts/build_modern_corpus.py --html DIR       # or: an unpacked docs html/ folder

It reads the prose paragraphs (``<p>``) of the tutorial, the HOWTOs, the FAQ, the language
reference and the library reference, splits them into sentences, keeps the ones that read as plain
English (6 to 30 words, no code, no markup), removes duplicates, shuffles them with a fixed seed and
writes ``coursekit/assets/corpus/pydoc_sentences.txt.gz`` (one sentence a line) plus the provenance
and licence note ``pydoc_sentences.LICENSE.md``. ``coursekit.models.agreement`` reads that file.
"""

from __future__ import annotations

import argparse
import gzip
import html
import random
import re
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "coursekit" / "assets" / "corpus"
OUT_FILE = OUT_DIR / "pydoc_sentences.txt.gz"
NOTE_FILE = OUT_DIR / "pydoc_sentences.LICENSE.md"
PACKAGE = "python3.11-doc"
SECTIONS = ("tutorial", "howto", "faq", "reference", "library")
SEED = 0
MAX_SENTENCES = 4000

NOTE = """# Modern English sentences: provenance and licence

`pydoc_sentences.txt.gz` holds {n} English sentences, one a line, taken from the prose
paragraphs of the Python {version} documentation (tutorial, HOWTOs, FAQ, language and library
reference) as packaged by Debian (`{package}`, version {deb_version}). They were extracted by
`scripts/build_modern_corpus.py`: sentences of 6 to 30 words without code or markup, deduplicated
and shuffled with seed {seed}. The course uses them only to measure and to calibrate quantized
models (`coursekit.models.agreement`).

The Python documentation is Copyright (c) 2001-2023 Python Software Foundation, All rights
reserved, and is distributed under the PSF License Agreement (Python Software Foundation License
Version 2), a permissive free licence: https://docs.python.org/3/license.html. The excerpts are
redistributed here under that licence, with this notice.
"""


class _Paragraphs(HTMLParser):
    """Text of every <p> element outside <pre>/<code>-heavy blocks."""

    def __init__(self):
        super().__init__()
        self.paragraphs, self._buf, self._depth, self._code = [], [], 0, 0

    def handle_starttag(self, tag, attrs):
        if tag == "p":
            self._depth += 1
            self._buf = []
        elif tag in ("code", "pre", "span") and self._depth and any(
                k == "class" and v and ("pre" in v or "literal" in v) for k, v in attrs):
            self._code += 1
            self._buf.append(" \x00 ")     # marks a literal: the sentence holding it is dropped
        elif tag in ("code", "pre") and self._depth:
            self._code += 1
            self._buf.append(" \x00 ")

    def handle_endtag(self, tag):
        if tag == "p" and self._depth:
            self._depth -= 1
            self.paragraphs.append("".join(self._buf))
        elif tag in ("code", "pre", "span") and self._code:
            self._code -= 1

    def handle_data(self, data):
        if self._depth:
            self._buf.append(data)


_WORD = re.compile(r"^[A-Za-z][A-Za-z'\-]*[,;:]?$")


def _plain(sentence: str) -> bool:
    """A sentence of 6 to 30 plain words, starting with a capital and ending with a full stop."""
    if "\x00" in sentence or not sentence[:1].isupper() or not sentence.endswith("."):
        return False
    words = sentence[:-1].split()
    return 6 <= len(words) <= 30 and all(_WORD.match(w) for w in words)


def sentences_from(html_dir: Path) -> list[str]:
    found, seen = [], set()
    for section in SECTIONS:
        for page in sorted((html_dir / section).rglob("*.html")):
            parser = _Paragraphs()
            parser.feed(page.read_text(encoding="utf-8", errors="replace"))
            for para in parser.paragraphs:
                text = " ".join(html.unescape(para).split())
                for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text):
                    s = s.strip()
                    if _plain(s) and s.lower() not in seen:
                        seen.add(s.lower())
                        found.append(s)
    return found


def fetch_docs(workdir: Path) -> tuple[Path, str]:
    """Download and unpack the Debian package (apt-get download needs no root)."""
    subprocess.run(["apt-get", "download", PACKAGE], cwd=workdir, check=True)
    deb = next(workdir.glob(f"{PACKAGE}_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(workdir / "root")], check=True)
    html_dir = next((workdir / "root" / "usr" / "share" / "doc").glob("python3*/html"))
    return html_dir, deb.name.split("_")[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--html", type=Path, help="an unpacked Python docs html/ folder (default: apt)")
    ap.add_argument("--deb-version", default="unknown", help="the package version, for the note")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        html_dir, deb_version = (args.html, args.deb_version) if args.html else fetch_docs(Path(tmp))
        sentences = sentences_from(html_dir)
    random.Random(SEED).shuffle(sentences)
    sentences = sentences[:MAX_SENTENCES]
    if len(sentences) < 1500:
        sys.exit(f"only {len(sentences)} sentences found in {html_dir}; expected at least 1500")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    # mtime=0: the same sentences give the same bytes
    with open(OUT_FILE, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(("\n".join(sentences) + "\n").encode("utf-8"))
    NOTE_FILE.write_text(NOTE.format(n=len(sentences), version="3.11", package=PACKAGE,
                                     deb_version=deb_version, seed=SEED))
    print(f"wrote {len(sentences)} sentences to {OUT_FILE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
