"""Every call to the Kubernetes API goes through this package.

``KubeClient`` makes blocking calls with plain-dict objects, ``AsyncKube`` runs them off the
event loop for the controller, ``KubernetesPlatform`` gives the gateway ready pods and specs
from watches, and ``kinds`` names the resources kubelambda touches.
"""

from kubelambda.kube.aio import AsyncKube
from kubelambda.kube.client import Connection, KubeClient, ObjectList, WatchEvent
from kubelambda.kube.errors import ApiError, Conflict, NotFound
from kubelambda.kube.events import EventType, event_manifest
from kubelambda.kube.informer import Informer
from kubelambda.kube.kinds import Kind
from kubelambda.kube.platform import KubernetesPlatform

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
