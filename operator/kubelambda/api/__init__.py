"""Spec models of Function and Trigger: parsing, defaults and validation, shared by every component.

``parse_function`` and ``parse_trigger`` read one object (a decoded manifest or a kopf body);
``load_manifests`` reads files for local mode. The CRDs in crds/ are the source of truth.
"""

from kubelambda.api.delivery import DeadLetter, Delivery
from kubelambda.api.env import EnvVar, FieldRef, KeyRef, ResourceFieldRef
from kubelambda.api.errors import ManifestError, ManifestProblem, Problem, SpecError
from kubelambda.api.function import (
    Code,
    ConfigMapCode,
    FolderCode,
    Function,
    InlineCode,
    parse_function,
)
from kubelambda.api.limits import Scaling
from kubelambda.api.manifests import load_manifests
from kubelambda.api.meta import API_GROUP, API_VERSION
from kubelambda.api.trigger import (
    BucketSource,
    HttpAuth,
    HttpSource,
    S3Source,
    ScheduleSource,
    SecretKeyRef,
    Source,
    Trigger,
    parse_trigger,
    schedule_of,
)

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "BucketSource",
    "Code",
    "ConfigMapCode",
    "DeadLetter",
    "Delivery",
    "EnvVar",
    "FieldRef",
    "FolderCode",
    "Function",
    "HttpAuth",
    "HttpSource",
    "InlineCode",
    "KeyRef",
    "ManifestError",
    "ManifestProblem",
    "Problem",
    "ResourceFieldRef",
    "S3Source",
    "Scaling",
    "ScheduleSource",
    "SecretKeyRef",
    "Source",
    "SpecError",
    "Trigger",
    "load_manifests",
    "parse_function",
    "parse_trigger",
    "schedule_of",
]
