"""Compiled-program artifacts: a versioned JSON Schema (``compiled-program.v1.schema.json``), safe
loading (no pickles, no eval; code, endpoints and model files only where the user's
:class:`TrustPolicy` allows) and atomic saving.

>>> save_result(result, "sentiment.json", program=Sentiment(), pool=pool)
>>> program = load_artifact("sentiment.json")
"""

from optimizer.artifact.errors import (
    ArtifactError,
    ArtifactFormatError,
    ArtifactIntegrityError,
    ArtifactProgramError,
    ArtifactSecretError,
    ArtifactTrustError,
    ArtifactVersionError,
    SignatureDriftError,
)
from optimizer.artifact.load import load_artifact, read_artifact
from optimizer.artifact.save import save_artifact, save_result
from optimizer.artifact.schema import FORMAT_VERSION, content_hash, schema
from optimizer.artifact.trust import TrustPolicy

__all__ = ["FORMAT_VERSION", "ArtifactError", "ArtifactFormatError", "ArtifactIntegrityError", "ArtifactProgramError",
           "ArtifactSecretError", "ArtifactTrustError", "ArtifactVersionError", "SignatureDriftError", "TrustPolicy",
           "content_hash", "load_artifact", "read_artifact", "save_artifact", "save_result", "schema"]
