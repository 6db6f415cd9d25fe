"""The job manifest (``job.yaml``): Racetrack's fields and meanings, one model for CLI and lifecycle.

    from trackside.manifest import load_manifest, ManifestError

    try:
        manifest = load_manifest(Path("job.yaml"), overrides=["git.branch=dev"])
    except ManifestError as exc:
        print(exc)            # every problem, one a line, each with its field path
        exc.errors            # [FieldError(path, value, expected, problem, origin), ...]
    manifest.python3          # typed jobtype_extra of a python3 job (Python3Extra)
    manifest.warnings         # deprecations, e.g. "'lang' is deprecated ..."

Compatibility with Racetrack (what a Racetrack job.yaml may contain and what happens to it):

- accepted with a deprecation warning, as Racetrack 2.x still accepts them: ``lang`` (for
  ``jobtype``), ``python`` / ``golang`` / ``docker`` / ``wrapper_properties`` (for
  ``jobtype_extra``); a name next to its alias is an error, as in Racetrack's schema;
- accepted and dropped: ``image_type: docker`` (Racetrack's only image type; any other value is
  an error) and ``deprecated_fields`` (an internal attribute that Racetrack's client serialises
  into every deploy request); a directory holding ``fatman.yaml`` instead of ``job.yaml``;
- stricter than Racetrack's model where its documentation is: labels are strings (numbers and
  booleans are kept as text), runtime_env/build_env values are strings, names are DNS labels;
- ``git.remote`` is https:// (Racetrack's rule) or file:// (for the lifecycle to allow or refuse).
"""

from trackside.manifest.dumping import manifest_to_dict, manifest_to_yaml
from trackside.manifest.errors import FieldError, ManifestError
from trackside.manifest.field_types import RESERVED_RUNTIME_ENV
from trackside.manifest.jobtypes import PYTHON3, JobTypeRef, parse_jobtype
from trackside.manifest.loading import (
    FORMER_MANIFEST_FILENAME,
    MANIFEST_FILENAME,
    load_manifest,
    parse_manifest,
)
from trackside.manifest.model import (
    DEFAULT_VERSION,
    GitSpec,
    Manifest,
    Resources,
    manifest_error_from_validation,
)
from trackside.manifest.overrides import parse_override
from trackside.manifest.python3 import Python3Extra
from trackside.manifest.quantities import CpuQuantity, MemoryQuantity, parse_cpu, parse_memory, parse_quantity
from trackside.manifest.schema import manifest_json_schema
from trackside.manifest.versions import (
    LATEST,
    Version,
    compare_versions,
    is_stable,
    is_valid_version,
    is_version_pattern,
    is_version_request,
    latest,
    matches,
    parse_version,
    resolve,
)

__all__ = [
    "DEFAULT_VERSION",
    "FORMER_MANIFEST_FILENAME",
    "LATEST",
    "MANIFEST_FILENAME",
    "PYTHON3",
    "RESERVED_RUNTIME_ENV",
    "CpuQuantity",
    "FieldError",
    "GitSpec",
    "JobTypeRef",
    "Manifest",
    "ManifestError",
    "MemoryQuantity",
    "Python3Extra",
    "Resources",
    "Version",
    "compare_versions",
    "is_stable",
    "is_valid_version",
    "is_version_pattern",
    "is_version_request",
    "latest",
    "load_manifest",
    "manifest_error_from_validation",
    "manifest_json_schema",
    "manifest_to_dict",
    "manifest_to_yaml",
    "matches",
    "parse_cpu",
    "parse_jobtype",
    "parse_manifest",
    "parse_memory",
    "parse_override",
    "parse_quantity",
    "parse_version",
    "resolve",
]
