"""Kubernetes' own rules for the values detk8s puts in manifests, as pydantic types: checked when
a config loads, so a bad value is one line naming its key, never an API server's rejection.

From k8s.io/apimachinery (validation.IsDNS1123Label/Subdomain, IsQualifiedName, IsValidLabelValue,
IsConfigMapKey; resource.Quantity) and the distribution/reference image grammar.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_LABEL = re.compile(rf"^{_LABEL}$")
DNS_SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
# resource.Quantity: a non-negative decimal number with an SI, binary or exponent suffix.
QUANTITY = re.compile(r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([numkMGTPE]|[KMGTPE]i|[eE][-+]?[0-9]+)?$")
# distribution/reference: [domain[:port]/]path[:tag][@digest], the path lowercase.
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?"  # noqa: E501
_PATH = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_REPOSITORY = re.compile(rf"^(?:{_DOMAIN}/)?{_PATH}$")
IMAGE_REFERENCE = re.compile(rf"^(?:{_DOMAIN}/)?{_PATH}(?::{_TAG})?(?:@{_DIGEST})?$")
MAX_REPOSITORY = 255


def dns_label(v: str) -> str:
    if len(v) > 63 or not DNS_LABEL.match(v):
        raise ValueError(f"{v!r} is not a valid name: lowercase letters, digits and '-', "
                         "starting and ending with a letter or digit, at most 63")  # fmt: skip
    return v


def dns_subdomain(v: str) -> str:
    if len(v) > 253 or not DNS_SUBDOMAIN.match(v):
        raise ValueError(f"{v!r} is not a valid name: lowercase letters, digits, '-' and '.', "
                         "starting and ending with a letter or digit, at most 253")  # fmt: skip
    return v


def qualified_name(v: str) -> str:
    """A label or annotation key: [prefix/]name, the prefix a DNS subdomain."""
    prefix, slash, name = v.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not DNS_SUBDOMAIN.match(prefix)):
        raise ValueError(f"{v!r}: the prefix before '/' must be a DNS subdomain (example.com)")
    if len(name) > 63 or not _NAME.match(name):
        raise ValueError(f"{v!r} is not a valid key: letters, digits, '-', '_' and '.', "
                         "starting and ending with a letter or digit, at most 63 (after any "
                         "'prefix/')")  # fmt: skip
    return v


def label_value(v: str) -> str:
    if v and (len(v) > 63 or not _NAME.match(v)):
        raise ValueError(f"{v!r} is not a valid label value: letters, digits, '-', '_' and "
                         "'.', starting and ending with a letter or digit, at most 63")  # fmt: skip
    return v


def config_key(v: str) -> str:
    if len(v) > 253 or not CONFIG_KEY.match(v):
        raise ValueError(f"{v!r} is not a valid Secret key: letters, digits, '-', '_' and '.'")
    return v


def quantity(v: Any) -> Any:
    """A resource quantity; a bare number is one too (`cpu: 8`, as Kubernetes takes it)."""
    if isinstance(v, bool):
        return v  # left for the str type to refuse
    if isinstance(v, (int, float)):
        v = format(v, "g") if isinstance(v, float) else str(v)
    if isinstance(v, str) and not QUANTITY.match(v):
        raise ValueError(f"{v!r} is not a Kubernetes quantity (8, 500m, 32Gi, 1.5)")
    return v


def image_reference(v: str) -> str:
    name = v.split("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    if not IMAGE_REFERENCE.match(v) or len(name) > MAX_REPOSITORY:
        raise ValueError(f"{v!r} is not an image reference ([registry[:port]/]path[:tag]"
                         "[@sha256:...], the path lowercase)")  # fmt: skip
    return v


def image_repository(v: str) -> str:
    if not IMAGE_REPOSITORY.match(v) or len(v) > MAX_REPOSITORY:
        raise ValueError(f"{v!r} is not an image repository ([registry[:port]/]path, lowercase, "
                         "no tag)")  # fmt: skip
    return v


DnsLabel = Annotated[str, AfterValidator(dns_label)]
DnsSubdomain = Annotated[str, AfterValidator(dns_subdomain)]
LabelKey = Annotated[str, AfterValidator(qualified_name)]
LabelValue = Annotated[str, AfterValidator(label_value)]
SecretKey = Annotated[str, AfterValidator(config_key)]
Quantity = Annotated[str, BeforeValidator(quantity)]
ImageReference = Annotated[str, AfterValidator(image_reference)]
ImageRepository = Annotated[str, AfterValidator(image_repository)]
