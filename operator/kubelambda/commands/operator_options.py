"""``kubelambda operator``'s command line: its options (``build_parser``, whose help the
README's set-up quotes) and the controller's configuration they make (``config_from_args``).

commands/operator.py parses with them before it starts anything.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from types import MappingProxyType

from kubelambda.commands.serving import add_broker_flags
from kubelambda.commands.warmpool import add_pool_flags, warm_pool_config
from kubelambda.controller.config import ControllerConfig

__all__ = ["build_parser", "config_from_args"]


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {text!r}")
    return key.strip(), value.strip()


def _labels(text: str) -> dict[str, str]:
    return dict(_pair(item) for item in text.split(",") if item.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def build_parser(prog: str = "kubelambda operator") -> argparse.ArgumentParser:
    defaults = ControllerConfig()
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Run the kubelambda controller: reconcile Function and Trigger objects into the"
            " ConfigMaps, Deployments, Services and NetworkPolicies that serve them."
        ),
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        help="kubeconfig file (default: $KUBECONFIG, the in-cluster service account,"
        " ~/.kube/config)",
    )
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="watch only this namespace (repeatable; default: all namespaces)",
    )
    parser.add_argument(
        "--runtime-image",
        action="append",
        type=_pair,
        default=[],
        metavar="RUNTIME=IMAGE",
        help="image for a spec.runtime, e.g. python3.12=localhost/kubelambda-runtime:0.1.0"
        " (repeatable)",
    )
    parser.add_argument(
        "--image-pull-policy",
        default=defaults.image_pull_policy,
        choices=("IfNotPresent", "Always", "Never"),
    )
    parser.add_argument(
        "--fetch-image",
        default=defaults.fetch_image,
        help="the control-plane image, which fetches spec.code.s3 and spec.layers in a"
        " function pod's init container (the Helm chart sets it to its own image)",
    )
    parser.add_argument(
        "--gateway-url",
        default=defaults.gateway_url,
        help="the gateway's public base URL, shown in status.url (default: %(default)s)",
    )
    parser.add_argument(
        "--gateway-namespace",
        default=defaults.gateway_namespace,
        help="namespace of the gateway pods, the only ones let in by the NetworkPolicy"
        " Functions share (kubelambda-functions, one per namespace; default: %(default)s)",
    )
    parser.add_argument(
        "--gateway-selector",
        type=_labels,
        default=dict(defaults.gateway_pod_labels),
        metavar="K=V,K=V",
        help="labels of the gateway pods (default: app.kubernetes.io/name=kubelambda,"
        "app.kubernetes.io/component=gateway)",
    )
    parser.add_argument(
        "--gateway-port",
        type=int,
        default=defaults.gateway_port,
        help="the gateway pods' public (container) port, which function pods may reach"
        " (default: %(default)s)",
    )
    parser.add_argument(
        "--function-egress",
        choices=("restricted", "open"),
        default=defaults.function_egress,
        help="restricted: function pods may connect only to DNS, the gateway and what their"
        " Function declares in spec.network.egress; open: anywhere (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-from",
        type=_names,
        default=",".join(defaults.metrics_from),
        metavar="NS,NS",
        help="namespaces whose pods may scrape function pods' /metrics (port 'metrics');"
        " '*' for every namespace, '' for none (default: %(default)s)",
    )
    parser.add_argument("--region", default=defaults.region, help="AWS_REGION for handlers")
    parser.add_argument(
        "--account-id", default=defaults.account_id, help="account id in function ARNs"
    )
    parser.add_argument(
        "--s3-webhook-arn",
        default=defaults.s3_webhook_arn,
        help="queue ARN of the gateway's webhook target on S3 servers (default: %(default)s)",
    )
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=defaults.resync_seconds,
        help="reconcile every object this often even without events (default: %(default)s)",
    )
    parser.add_argument(
        "--observe-seconds",
        type=float,
        default=defaults.observe_seconds,
        help="look at the source of each queue and kafka Trigger this often (its consumer's"
        " position and lag in status.consumer; default: %(default)s)",
    )
    add_pool_flags(parser)
    parser.add_argument(
        "--operator-selector",
        type=_labels,
        default=dict(defaults.operator_pod_labels),
        metavar="K=V,K=V",
        help="labels of the operator's own pods, the only ones let in to pool pods (default:"
        " app.kubernetes.io/name=kubelambda,app.kubernetes.io/component=operator)",
    )
    parser.add_argument(
        "--health-port",
        type=int,
        default=0,
        help="serve kopf's liveness probe at http://0.0.0.0:PORT/healthz (0: off)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="serve the operator's own metrics (reconciles, Functions and Triggers by state,"
        " the autoscaler's ticks and scalings) at http://0.0.0.0:PORT/metrics (0: off)",
    )
    parser.add_argument(
        "--prometheus-url",
        default=os.environ.get("KUBELAMBDA_PROMETHEUS_URL", ""),
        help="the autoscaler reads the gateway's metrics here ($KUBELAMBDA_PROMETHEUS_URL);"
        " empty: no autoscaler in this process",
    )
    parser.add_argument(
        "--autoscaler-port",
        type=int,
        default=8082,
        help="the autoscaler's wake-up endpoint for the gateway, which must send"
        " $KUBELAMBDA_WAKE_TOKEN as a bearer token when that is set (default: %(default)s)",
    )
    parser.add_argument(
        "--announce-url",
        default=os.environ.get("KUBELAMBDA_ANNOUNCE_URL", ""),
        metavar="URL",
        help="where Functions' starting pods reach --announce-port to announce that they"
        " serve, e.g. http://kubelambda-operator.kubelambda.svc:8083 ($KUBELAMBDA_ANNOUNCE_URL;"
        " the chart sets it): the gateway then sends to a new pod before the kubelet reports it."
        " Empty, or no autoscaler here: pods do not announce",
    )
    parser.add_argument(
        "--announce-port",
        type=int,
        default=8083,
        help="the autoscaler's announcement endpoint, open to any address: each announcement"
        " is authenticated by its Function's key (Secret <function>-announce)"
        " (default: %(default)s)",
    )
    parser.add_argument(
        "--read-only-root-filesystem",
        action="store_true",
        help="every function pod keeps a read-only root filesystem, its inline code mounted and"
        " /tmp an emptyDir, for clusters whose admission requires it; cold starts wait about"
        " 300 ms more (the kubelet's volume manager). Default: a runtime image's pods with"
        " inline code of at most 120 KiB start without volumes, their root writable and"
        " bounded by an ephemeral-storage limit",
    )
    parser.add_argument(
        "--autoscaler-tick",
        type=float,
        default=1.0,
        help="seconds between the autoscaler's decisions (default: %(default)s)",
    )
    add_broker_flags(parser)
    parser.add_argument(
        "--schedule-speed",
        type=float,
        default=1.0,
        metavar="N",
        help="run schedules' clocks N times as fast (tests and demos; default 1)",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING"), help="kubelambda's"
    )
    parser.add_argument(
        "--kopf-log-level",
        default="WARNING",
        choices=("DEBUG", "INFO", "WARNING"),
        help="kopf's own logs (watch streams, handlers)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> ControllerConfig:
    if not 0 <= args.metrics_port <= 65535:
        raise SystemExit("--metrics-port must be a port number (0: off)")
    if args.workers < 1:
        raise SystemExit("--workers must be at least 1")
    if args.observe_seconds <= 0:
        raise SystemExit("--observe-seconds must be above 0")
    return ControllerConfig(
        runtime_images=MappingProxyType(dict(args.runtime_image)),
        image_pull_policy=args.image_pull_policy,
        fetch_image=args.fetch_image,
        gateway_url=args.gateway_url,
        gateway_namespace=args.gateway_namespace,
        gateway_pod_labels=MappingProxyType(dict(args.gateway_selector)),
        metrics_from=args.metrics_from,
        gateway_port=args.gateway_port,
        function_egress=args.function_egress,
        region=args.region,
        account_id=args.account_id,
        s3_webhook_arn=args.s3_webhook_arn,
        workers=args.workers,
        resync_seconds=args.resync_seconds,
        observe_seconds=args.observe_seconds,
        warm_pool=warm_pool_config(args),
        # The chart runs the operator in the gateway's namespace (its release's).
        operator_namespace=os.environ.get("KUBELAMBDA_POD_NAMESPACE") or args.gateway_namespace,
        operator_pod_labels=MappingProxyType(dict(args.operator_selector)),
        # Announcements go to the autoscaler's endpoint: only where this process runs one.
        announce_url=(args.announce_url or None) if args.prometheus_url else None,
        announce_port=args.announce_port,
        read_only_root=args.read_only_root_filesystem,
    )
