"""Every call to the Kubernetes API goes through this package.

``KubeClient`` makes blocking calls with plain-dict objects, ``AsyncKube`` runs them off the
event loop for the controller, ``KubernetesPlatform`` gives the gateway ready pods and specs
from watches, and ``kinds`` names the resources kubelambda touches.
"""

from kubelambda.platforms.kubernetes.aio import AsyncKube
from kubelambda.platforms.kubernetes.client import Connection, KubeClient, ObjectList, WatchEvent
from kubelambda.platforms.kubernetes.errors import ApiError, Conflict, NotFound
from kubelambda.platforms.kubernetes.events import EventType, event_manifest
from kubelambda.platforms.kubernetes.informer import Informer
from kubelambda.platforms.kubernetes.kinds import Kind
from kubelambda.platforms.kubernetes.platform import KubernetesPlatform

__all__ = [
    "ApiError",
    "AsyncKube",
    "Conflict",
    "Connection",
    "EventType",
    "Informer",
    "Kind",
    "KubeClient",
    "KubernetesPlatform",
    "NotFound",
    "ObjectList",
    "WatchEvent",
    "event_manifest",
]
