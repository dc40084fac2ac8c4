"""SCAFFOLD: control variates on the server and on every phone correct the drift of local steps."""

from cluster.fl.strategies.base import StrategyPlugin
from cluster.fl.strategies.scaffold.device import ControlVariates
from cluster.fl.strategies.scaffold.server import Scaffold, check_device_state

STRATEGY = StrategyPlugin(
    title="SCAFFOLD",
    server=lambda cfg, context: Scaffold(context.sampler, context.dense_part(), int(len(context.eligible))),
    device=lambda cfg: ControlVariates(),
    check_device_state=check_device_state,
)
