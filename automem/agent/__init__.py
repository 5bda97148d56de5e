"""The inner-loop agent: LOG then PLAN each step; one-model and two-model routing."""

from automem.agent.agent import Agent, ModelRoute, parse_action
from automem.agent.events import EpisodeEnd, StepEvent, TurnEvent

__all__ = ["Agent", "EpisodeEnd", "ModelRoute", "StepEvent", "TurnEvent", "parse_action"]
