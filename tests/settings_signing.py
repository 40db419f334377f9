"""Settings planted by a test, signed as ``cidx-auth login`` signs them.

``auth.json`` carries a MAC under the per-user secret (:mod:`adapters.settings_seal`),
so a test that plants or edits settings by hand signs them with the same secret the
code under test will use; an unsigned edit is itself one of the refusals tested.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from adapters.project_layout import ProjectLayout
from adapters.secret_sources import secret_source
from adapters.settings_seal import seal


def write_signed(project: Path, document: dict[str, Any], config_dir: Path | None = None) -> None:
    """Write ``document`` as ``project``'s ``auth.json``, signed with the secret in
    ``config_dir`` (default: the one the environment names; created if missing)."""
    secret = secret_source(config_dir, None if config_dir is None else {}).value()
    layout = ProjectLayout(project)
    layout.directory.mkdir(mode=0o700, exist_ok=True)
    layout.settings.write_text(json.dumps(seal(document, project, secret), indent=2))


def edit_signed(project: Path, config_dir: Path | None = None, **changes: Any) -> dict[str, Any]:
    """Change fields of ``project``'s ``auth.json`` and sign it again; the new document."""
    document: dict[str, Any] = json.loads(ProjectLayout(project).settings.read_text())
    document.update(changes)
    write_signed(project, document, config_dir)
    return document
