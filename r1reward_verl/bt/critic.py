"""Critic-then-score (MM-RLHF-Reward, R1-Reward Table 6): a generative critic writes a critique of each response,
then a scalar head scores the response with its critique. The critic is verl's SFT trainer on
:func:`critique_request` -> critique rows; the scorer is the Bradley-Terry trainer (:mod:`.trainer`) on
:func:`scored_response` texts (gold critiques in training, the critic's own at evaluation,
``r1reward_verl.eval.critic``). These two functions are the one definition both sides use."""

from __future__ import annotations

INSTRUCTION = "Critique the response."


def critique_request(question: str, response: str, num_images: int) -> str:
    """The critic's user turn: ``<image>`` placeholders, the question, the response, the instruction."""
    return "<image>" * num_images + f"{question}\nResponse: {response}\n{INSTRUCTION}"


def scored_response(response: str, critique: str) -> str:
    """What the scorer reads as the assistant's turn: the response, then its critique."""
    return f"{response}\nCritique: {critique.strip()}"
