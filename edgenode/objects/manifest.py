"""Read manifest files (the only module of `edgenode.objects` that does I/O)."""

from __future__ import annotations

import sys
from pathlib import Path

from edgenode.objects._errors import FieldProblem, ManifestError
from edgenode.objects._parse import Manifest
from edgenode.objects._translate import nothing_applied
from edgenode.objects._yaml import load_manifests_text

STDIN = "-"


def _unreadable(source: str, actual: str, hint: str) -> ManifestError:
    return ManifestError(
        [
            FieldProblem.whole(
                source,
                expected="a readable UTF-8 YAML file",
                actual=actual,
                hint=f"{hint} {nothing_applied('fix the path')}",
            )
        ]
    )


def read_manifest_text(path: str | Path) -> tuple[str, str]:
    """The text of a manifest file and its name for messages; `-` reads standard input."""
    if str(path) == STDIN:
        return sys.stdin.read(), "<stdin>"
    source = str(path)
    try:
        return Path(path).read_text(encoding="utf-8"), source
    except FileNotFoundError:
        raise _unreadable(source, "no such file", "Check the file name.") from None
    except IsADirectoryError:
        raise _unreadable(source, "a directory", "Name a file, not a directory.") from None
    except PermissionError:
        raise _unreadable(
            source, "a file this user may not read", "Check its permissions."
        ) from None
    except UnicodeDecodeError as exc:
        raise _unreadable(
            source,
            f"bytes that are not UTF-8 (at byte {exc.start})",
            "Save the file as UTF-8.",
        ) from None
    except OSError as exc:
        raise _unreadable(source, f"an error reading it ({exc.strerror})", "") from None


def load_manifests(path: str | Path) -> list[Manifest]:
    """Read and validate every manifest in a YAML file (`-` for standard input).

    Raises `ManifestError` with every problem of the file, or if it cannot be read.
    """
    text, source = read_manifest_text(path)
    return load_manifests_text(text, source=source)
