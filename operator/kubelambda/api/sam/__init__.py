"""AWS SAM templates as Functions and Triggers: ``convert_file`` reads a template, resolves its
intrinsic functions and Globals, and returns the manifests with a report of what did not map.

Used by ``kubelambda sam convert`` (commands/sam.py) and by ``load_manifests`` for
``kubelambda local template.yaml``. Pure: it reads the template and its code folders, nothing else.
"""

from kubelambda.api.sam.convert import Conversion, SamOptions, convert_file, convert_template
from kubelambda.api.sam.report import Finding, Kind, Report
from kubelambda.api.sam.resources import Stack
from kubelambda.api.sam.template import (
    SAM_TRANSFORM,
    TemplateError,
    is_sam_template,
    load_template,
    mentions_transform,
    parse_template,
)

__all__ = [
    "SAM_TRANSFORM",
    "Conversion",
    "Finding",
    "Kind",
    "Report",
    "SamOptions",
    "Stack",
    "TemplateError",
    "convert_file",
    "convert_template",
    "is_sam_template",
    "load_template",
    "mentions_transform",
    "parse_template",
]
