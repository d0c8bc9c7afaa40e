"""The Invoke API resolves a Function by the Lambda name it carries (annotation
kubelambda.dev/function-name), after its own name."""

from __future__ import annotations

import pytest

from kubelambda.api.identity import FunctionKey
from kubelambda.gateway.exceptions import FunctionNotFound, InvalidParameter
from kubelambda.gateway.routing import FunctionEntry, RoutingTable

ORDERS = FunctionKey("default", "order-handler")
TEAM_ORDERS = FunctionKey("team", "order-handler")
LAMBDA_NAMED = RoutingTable(
    functions=[
        FunctionEntry(ORDERS, lambda_name="OrderHandler"),
        FunctionEntry(TEAM_ORDERS, lambda_name="OrderHandler"),
        FunctionEntry(FunctionKey("default", "plain")),
        # One Function's own name is another's Lambda name: its own name wins.
        FunctionEntry(FunctionKey("default", "audit"), lambda_name="plain"),
        # Two Functions of a namespace carrying one Lambda name: it names neither.
        FunctionEntry(FunctionKey("default", "a"), lambda_name="Twice"),
        FunctionEntry(FunctionKey("default", "b"), lambda_name="Twice"),
    ]
)


@pytest.mark.parametrize(
    ("name", "qualifier", "key"),
    [
        ("OrderHandler", None, ORDERS),
        ("OrderHandler:$LATEST", None, ORDERS),
        ("OrderHandler", "$LATEST", ORDERS),
        ("team.OrderHandler", None, TEAM_ORDERS),
        ("arn:aws:lambda:us-east-1:000000000000:function:OrderHandler", None, ORDERS),
        ("arn:aws:lambda:us-east-1:000000000000:function:team.OrderHandler", None, TEAM_ORDERS),
        ("order-handler", None, ORDERS),
        ("plain", None, FunctionKey("default", "plain")),
    ],
)
def test_resolve_by_lambda_name(name: str, qualifier: str | None, key: FunctionKey) -> None:
    assert LAMBDA_NAMED.resolve(name, qualifier=qualifier).key == key


@pytest.mark.parametrize(
    ("name", "qualifier", "error", "message"),
    [
        ("OrderHandler:live", None, FunctionNotFound, "only \\$LATEST exists"),
        ("Twice", None, InvalidParameter, "name 'Twice' is not a DNS label"),
        ("Missing", None, InvalidParameter, "name 'Missing' is not a DNS label"),
        ("other.OrderHandler", None, InvalidParameter, "is not a DNS label"),
    ],
)
def test_lambda_names_that_name_no_function(
    name: str, qualifier: str | None, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        LAMBDA_NAMED.resolve(name, qualifier=qualifier)
