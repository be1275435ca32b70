"""Agents: observation encoders and the actor-critic that wraps a memory core."""

from agents.actor_critic import ActorCritic

__all__ = ["ActorCritic"]
