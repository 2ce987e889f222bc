"""Compiled-program artifacts: a versioned JSON Schema (``compiled-program.v1.schema.json``), safe
loading (no pickles, no eval, only the program reference is imported) and atomic saving.

>>> save_result(result, "sentiment.json", program=Sentiment(), pool=pool)
>>> program = load_artifact("sentiment.json")
"""

from optimizer.artifact.errors import (
    ArtifactError,
    ArtifactFormatError,
    ArtifactIntegrityError,
    ArtifactProgramError,
    ArtifactSecretError,
    ArtifactVersionError,
    SignatureDriftError,
)
from optimizer.artifact.load import load_artifact, read_artifact
from optimizer.artifact.save import save_artifact, save_result
from optimizer.artifact.schema import FORMAT_VERSION, content_hash, schema

__all__ = ["FORMAT_VERSION", "ArtifactError", "ArtifactFormatError", "ArtifactIntegrityError",
           "ArtifactProgramError", "ArtifactSecretError", "ArtifactVersionError", "SignatureDriftError",
           "content_hash", "load_artifact", "read_artifact", "save_artifact", "save_result", "schema"]
