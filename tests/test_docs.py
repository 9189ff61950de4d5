"""The documentation a user clones must be followable on its own.

Docs, configs and code comments once cited research notes that lived beside the repository, not in it, so a
user who cloned it could not check a single choice. The facts now live in ``docs/`` (``docs/paper.md`` for
the paper, VPNs, Torch-Pruning and the baselines; ``docs/mlflow.md`` and ``docs/cluster.md`` for MLflow and
SLURM), and these tests keep it that way: no tracked file cites the outside notes, every relative link in
``docs/*.md`` reaches a file, and every section or open question cited as ``paper.md §2.4`` / ``paper.md Q14``
exists in ``docs/paper.md``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

#: A citation of the notes outside the repository (written so that this file does not match itself).
OUTSIDE_NOTES = re.compile(r"shared/(?:research|design)\b")
#: A Markdown link or image: [text](target) or [text](target "title").
MD_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
#: A URL scheme (http:, https:, mailto:, ...): not a file in the repository.
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
#: A citation of docs/paper.md by section (``§2.4``, ``2.4``, ``§2.2-2.4``) or open question (``Q5``, ``Q14-Q22``),
#: also after a Markdown link to it (``[paper.md](paper.md) §0``).
PAPER_CITE = re.compile(r"paper\.md(?:\]\([^)]*\))?,? (§?\d+(?:\.\d+)*(?:-\d+(?:\.\d+)*)?|Q\d+(?:-Q\d+)?)\b")


def tracked_text_files() -> dict[str, str]:
    """Every file git tracks, as text (binary files left out), keyed by its path in the repository."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    files = {}
    for name in names.decode().split("\0"):
        path = ROOT / name
        if not name or not path.is_file():  # a deletion not yet committed
            continue
        data = path.read_bytes()
        if b"\0" not in data:
            files[name] = data.decode("utf-8", errors="replace")
    return files


def without_code(markdown: str) -> str:
    """The text with fenced code blocks and inline code removed: a link shown as code is not a link."""
    markdown = re.sub(r"^(```|~~~).*?^\1[ \t]*$", "", markdown, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", markdown)


def dead_links(md_file: Path) -> list[str]:
    """The relative link targets of one Markdown file that name no existing file or folder."""
    dead = []
    for target in MD_LINK.findall(without_code(md_file.read_text(encoding="utf-8"))):
        if SCHEME.match(target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        if not (md_file.parent / path).exists():
            dead.append(target)
    return dead


def paper_anchors(text: str) -> set[str]:
    """The section numbers (``0``, ``1.7``, ``2.4``) and open questions (``Q14``) that docs/paper.md defines."""
    sections = re.findall(r"^#{2,4}\s+(\d+(?:\.\d+)*)\.?\s", text, flags=re.M)
    questions = re.findall(r"^\|\s*(Q\d+)\s*\|", text, flags=re.M)
    return set(sections) | set(questions)


def cited_anchors(citation: str) -> list[str]:
    """The anchors one citation names: both ends of a range (``2.2-2.4`` -> 2.2, 2.4; ``Q14-Q22`` -> Q14, Q22)."""
    return [part.lstrip("§") for part in citation.split("-")]


def test_no_tracked_file_cites_notes_outside_the_repository():
    hits = [
        f"{name}:{number}: {line.strip()}"
        for name, text in tracked_text_files().items()
        for number, line in enumerate(text.splitlines(), 1)
        if OUTSIDE_NOTES.search(line)
    ]
    assert not hits, "cite docs/ (e.g. docs/paper.md §2.4) instead:\n" + "\n".join(hits)


def test_every_relative_link_in_docs_reaches_a_file():
    pages = sorted(DOCS.glob("*.md"))
    assert pages, "docs/*.md missing"
    dead = {page.name: dead_links(page) for page in pages}
    assert not any(dead.values()), {name: links for name, links in dead.items() if links}


def test_every_citation_of_docs_paper_names_an_existing_section():
    anchors = paper_anchors((DOCS / "paper.md").read_text(encoding="utf-8"))
    assert {"0", "1.7", "2.2", "2.3", "2.4", "Q2", "Q5", "Q14", "Q22"} <= anchors
    missing = [
        f"{name}: paper.md {citation}"
        for name, text in tracked_text_files().items()
        for citation in PAPER_CITE.findall(text)
        if not set(cited_anchors(citation)) <= anchors
    ]
    assert not missing, "docs/paper.md has no such section or question:\n" + "\n".join(missing)


def test_the_checks_find_what_they_look_for(tmp_path):
    """The helpers can fail: a dead link, an outside note and an unknown section are all reported."""
    (tmp_path / "there.md").write_text("x")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md) [ok too](there.md#part) [web](https://example.org/x.md) [anchor](#top)\n"
        "[gone](missing.md) ![img](pics/none.png)\n`[code](not-a-link.md)`\n"
        "```\n[fenced](also-not-a-link.md)\n```\n"
    )
    assert dead_links(page) == ["missing.md", "pics/none.png"]
    note = "../" + "shared/" + "research/paper.md"
    assert OUTSIDE_NOTES.search(note) and OUTSIDE_NOTES.search("shared/" + "design")
    assert not OUTSIDE_NOTES.search("docs/paper.md") and not OUTSIDE_NOTES.search("/shared/passprune/results")
    cites = PAPER_CITE.findall("see paper.md §2.2-2.4, [paper.md](paper.md) Q14-Q22 and paper.md 1.7.")
    assert cites == ["§2.2-2.4", "Q14-Q22", "1.7"]
    assert [a for c in cites for a in cited_anchors(c)] == ["2.2", "2.4", "Q14", "Q22", "1.7"]
    assert paper_anchors("## 0. Intro\n### 2.4 Ours\n| Q3 | x |\n") == {"0", "2.4", "Q3"}
