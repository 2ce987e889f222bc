"""Typed artifact errors. Each names the file and the JSON path of the offending field
(``steps.classify.model.name``; ``$`` is the whole document)."""

from __future__ import annotations

from pathlib import Path

from optimizer.errors import ProgoptError


class ArtifactError(ProgoptError, ValueError):
    """An artifact that cannot be saved or loaded: ``path``, ``json_path`` and what is wrong."""

    def __init__(self, path: str | Path, json_path: str, message: str):
        self.path, self.json_path, self.message = str(path), json_path or "$", message
        super().__init__(f"{self.path}: {self.json_path}: {message}")


class ArtifactFormatError(ArtifactError):
    """Not JSON, or not valid under the compiled-program schema (unknown key, wrong type, ...)."""


class ArtifactVersionError(ArtifactError):
    """A format version this progopt cannot read (an unknown major version)."""


class ArtifactIntegrityError(ArtifactError):
    """The content does not match its hash (tampered or corrupted), or the program source changed."""


class ArtifactSecretError(ArtifactError):
    """The artifact would carry a credential (a key in a URL or the value of a secret env variable)."""


class ArtifactProgramError(ArtifactError):
    """The program reference does not import, or does not name a ``dspy.Module`` class."""


class ArtifactTrustError(ArtifactError):
    """The artifact asks for code, an endpoint or a model file that the user's configuration does not allow."""


class SignatureDriftError(ArtifactError):
    """The program's steps or signatures no longer match the artifact (name, field or type changed)."""
