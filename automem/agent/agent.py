"""The inner-loop agent: each step runs LOG (record the last action's outcome), then PLAN (consult memory,
read-only), then commits exactly one game action.

The LOG/PLAN invariant is structural: the LOG routine of step t runs only after the environment has answered the
action of step t-1, and PLAN may only read, so nothing is ever written about an outcome before it is observed.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automem.agent.events import EpisodeEnd, StepEvent, TurnEvent
from automem.agent.prompt import (
    DROPPED,
    MORE_OPS,
    MemoryTurn,
    StepContext,
    fit_context,
    fit_conversation,
    prefix_hash,
    results_message,
    static_prefix,
)
from automem.envs.base import TextEnv, actions_now, validate_action
from automem.llm.protocol import ChatModel, OutputConstraint, SamplingParams
from automem.llm.tokens import PER_MESSAGE_TOKENS, ApproxTokenCounter, TokenCounter, count_messages
from automem.memory.grammar import action_regex, parse, turn_regex
from automem.memory.ops import READ_ONLY_OPS
from automem.memory.store import MemoryStore
from automem.memory.turn import execute
from automem.scaffold.schema import Scaffold

EventSink = Callable[[Any], None]


@dataclass(frozen=True)
class ModelRoute:
    """Which client and model name a kind of turn goes to (``<base>:<adapter>`` names a LoRA adapter)."""

    client: ChatModel
    model: str


@dataclass(frozen=True)
class EpisodeStart:
    """Where a continued episode starts (a branch of a stored one, ``automem.branch``): the game is positioned at
    ``step``, showing ``observation``; the memory files are ``memory``; ``last_action`` was the step before's."""

    step: int
    observation: str
    info: dict[str, Any]
    memory: dict[str, str]
    last_action: str | None = None


@dataclass
class _Tally:
    turns: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_seconds: float = 0.0
    env_seconds: float = 0.0
    op_errors: int = 0
    invalid_actions: int = 0


class Agent:
    """Plays episodes with a scaffold and one or two models.

    Args:
        scaffold: prompts, memory schema, operations, quotas, budgets, sampling.
        memory: where memory turns (LOG and PLAN) go.
        action: where the action commit goes; defaults to ``memory`` (one-model mode). In two-model mode the
            memory route names the specialist (e.g. ``smollm2-135m:mem-v1``) and this one the base model.
        counter: counts prompt tokens for the budget; a conservative estimate by default.
        context_window: the served model's context length; the scaffold's budgets must fit it.
        env_in_thread: run ``env.reset``/``env.step`` in a worker thread, so CPU-bound games do not block an
            event loop that runs many episodes.
        sampling_seed: seed every request (``seed`` of the OpenAI API), each with its own value derived from this,
            the step, the phase and the turn; None: unseeded. Branch copies sample with different seeds.
    """

    def __init__(
        self,
        scaffold: Scaffold,
        *,
        memory: ModelRoute,
        action: ModelRoute | None = None,
        counter: TokenCounter | None = None,
        context_window: int = 4096,
        env_in_thread: bool = False,
        sampling_seed: int | None = None,
    ) -> None:
        self.scaffold = scaffold
        self.sampling_seed = sampling_seed
        self.memory_route = memory
        self.action_route = action or memory
        self.counter = counter or ApproxTokenCounter()
        self.env_in_thread = env_in_thread
        s = scaffold.sampling
        # Every prompt, however many turns a phase has, is cut to max_prompt_tokens (fit_conversation), so
        # the prompt budget plus the longest completion is all the window must hold.
        need = scaffold.context.max_prompt_tokens + max(s.memory_max_tokens, s.action_max_tokens)
        if need > context_window:
            raise ValueError(
                f"scaffold {scaffold.id}: context.max_prompt_tokens + completion tokens = {need} exceeds the "
                f"model's context window ({context_window})"
            )
        q = scaffold.quotas
        text_chars = max(8, min(120, q.max_line_chars))
        files = scaffold.file_names
        self._log_ops = list(scaffold.operations)
        self._plan_ops = [o for o in scaffold.operations if o in READ_ONLY_OPS]
        self._grammar = {
            "log": turn_regex(
                self._log_ops,
                files,
                max_ops=q.max_ops_per_turn,
                max_text_chars=text_chars,
                allow_new_files=scaffold.allow_new_files,
            ),
            "plan": turn_regex(self._plan_ops, files, max_ops=q.max_ops_per_turn, max_text_chars=text_chars),
        }
        t = scaffold.turns
        self._reserve_tokens = {
            "log": self._reserve("log", t.log_turns),
            "plan": self._reserve("plan", t.plan_turns),
        }

    def check_fits(self, actions: list) -> None:
        """Fail now if a step's prompt cannot fit the budget even with an empty observation and memory (then
        every attempt of every episode would fail the same way).

        Raises:
            ValueError: the static prompt (system text, operation help, file schema, the game's actions) and a
                phase's instruction exceed ``context.max_prompt_tokens``.
        """
        system = static_prefix(self.scaffold, actions)
        ctx = StepContext(0, None, "", "", "(no files)", [])
        p, c = self.scaffold.prompts, self.scaffold.context
        for instruction in (p.log, p.plan, p.action):
            fit_context(
                ctx, system, instruction, self.counter, c.max_prompt_tokens, c.max_observation_chars, 0
            )

    def system_prompt(self, env: TextEnv) -> str:
        """The static prefix every prompt of an episode on ``env`` starts with."""
        return static_prefix(self.scaffold, env.actions)

    async def _env(self, tally: _Tally, fn, *args, cheap: bool = False, **kw):
        """Call the game, in a worker thread unless it is cheap; adds the call's own time to the tally."""

        def timed():
            t0 = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                tally.env_seconds += time.perf_counter() - t0

        if self.env_in_thread and not cheap:
            return await asyncio.to_thread(timed)
        return timed()

    async def run_episode(
        self,
        env: TextEnv,
        *,
        seed: int | None,
        episode_id: str,
        memory_root: str | Path,
        max_steps: int,
        on_event: EventSink | None = None,
        after_step: Callable[[], Awaitable[None]] | None = None,
        start: EpisodeStart | None = None,
    ) -> EpisodeEnd:
        """Play one episode to its end or ``max_steps``; emits events and returns the summary.

        ``after_step`` is awaited after every environment step (the trajectory writer flushes there). With
        ``start`` the episode continues a restored one: ``env`` is already positioned (no reset), the memory starts
        as ``start.memory`` (written as the ``init`` files), and steps ``start.step .. max_steps-1`` are played.

        Raises:
            automem.llm.LLMError: the model endpoint failed beyond its retries (the caller records the attempt).
        """
        emit = on_event or (lambda _e: None)
        t_start = time.perf_counter()
        tally = _Tally()

        def on_record(rec) -> None:
            if not rec.ok and rec.phase != "init":
                tally.op_errors += 1
            emit(rec)

        actions = env.actions
        names = [a.name for a in actions]
        default = self.scaffold.default_action
        default_index = validate_action(actions, default)
        default_index = 0 if default_index is None else default_index
        system = static_prefix(self.scaffold, actions)
        phash = prefix_hash(system)
        if start is None:
            obs, info = await self._env(tally, env.reset, seed=seed)
            initial = [(f.name, f.initial) for f in self.scaffold.files if f.initial]
        else:
            obs, info = start.observation, dict(start.info)
            initial = sorted(start.memory.items())
        reset_seconds, tally.env_seconds = tally.env_seconds, 0.0
        store = MemoryStore.fresh(memory_root, self.scaffold.quotas, initial, on_record=on_record)
        last_action: str | None = None if start is None else start.last_action
        last_note = ""
        total_reward, terminated, truncated, steps = 0.0, False, False, 0
        progression = float(info.get("progression", 0.0))
        # Actions for this step only (NetHack's "letter g" while the game asks for an item).
        extra = actions_now(env)
        first = 0 if start is None else start.step
        for t in range(first, max_steps):
            # LOG: the observation now on screen is the outcome of the previous action.
            await self._memory_phase(
                "log",
                t,
                system,
                phash,
                self._context(t, last_action, last_note, obs, store, extra),
                store,
                emit,
                tally,
                episode_id,
            )
            # PLAN: read-only memory turns, then the action commit continues the same conversation.
            plan = await self._memory_phase(
                "plan",
                t,
                system,
                phash,
                self._context(t, last_action, last_note, obs, store, extra),
                store,
                emit,
                tally,
                episode_id,
            )
            if plan is None:  # no PLAN turn: the action instruction follows the step context directly
                ctx = self._context(t, last_action, last_note, obs, store, extra)
                user = self._user(system, ctx, self.scaffold.prompts.action)
                convo = [{"role": "system", "content": system}, {"role": "user", "content": user}]
                est = count_messages(self.counter, convo)
            else:  # after PLAN turns: their results, then the action instruction, within the budget
                convo, est = fit_conversation(
                    system,
                    plan[0],
                    plan[1],
                    self.scaffold.prompts.action,
                    self.counter,
                    self.scaffold.context.max_prompt_tokens,
                    plan[2],
                )
            step_names = names + [a.name for a in extra]
            text, index, valid = await self._commit(t, phash, convo, est, step_names, emit, tally, episode_id)
            if not valid:
                tally.invalid_actions += 1
                index = default_index
            # A thread hop costs ~0.1-0.3 ms; games whose steps take less than that on average run inline.
            # Resets, and games with slow steps (Crafter's), go to a thread so the event loop keeps serving.
            cheap = t >= 3 and tally.env_seconds / t < 1e-4
            # An extra action goes by name: it has no index in env.actions.
            chosen: int | str = index if index < len(names) else step_names[index]
            next_obs, reward, terminated, truncated, info = await self._env(
                tally, env.step, chosen, cheap=cheap
            )
            progression = float(info.get("progression", progression))
            total_reward += float(reward)
            emit(
                StepEvent(
                    episode_id=episode_id,
                    step=t,
                    observation=obs,
                    action=step_names[index],
                    action_index=index,
                    action_text=text,
                    action_valid=valid,
                    reward=float(reward),
                    terminated=bool(terminated),
                    truncated=bool(truncated),
                    progression=progression,
                    info=_jsonable(info),
                )
            )
            steps = t + 1 - first
            last_action = step_names[index]
            extra = actions_now(env)
            last_note = "" if valid else f" (your answer {text.strip()[:40]!r} was not a valid action)"
            obs = next_obs
            if after_step is not None:
                await after_step()
            if terminated or truncated:
                break
        end = EpisodeEnd(
            episode_id=episode_id,
            env_id=getattr(env, "env_id", "?"),
            seed=seed,
            steps=steps,
            episode_return=total_reward,
            progression=progression,
            terminated=bool(terminated),
            truncated=bool(truncated) or (first + steps >= max_steps and not terminated),
            invalid_actions=tally.invalid_actions,
            turns=tally.turns,
            prompt_tokens=tally.prompt_tokens,
            completion_tokens=tally.completion_tokens,
            llm_seconds=tally.llm_seconds,
            env_seconds=tally.env_seconds + reset_seconds,
            wall_seconds=time.perf_counter() - t_start,
            op_errors=tally.op_errors,
            memory_files={n: store.backend.read(n) for n in sorted(store.index)},
        )
        emit(end)
        return end

    def _context(
        self,
        t: int,
        last_action: str | None,
        note: str,
        obs: str,
        store: MemoryStore,
        extra: list | None = None,
    ) -> StepContext:
        c = self.scaffold.context
        recent = [(n, store.tail_lines(n, c.tail_lines)) for n in c.include_files if n in store.index]
        return StepContext(t, last_action, note, obs, store.render_index(), recent, list(extra or []))

    def _user(self, system: str, ctx: StepContext, instruction: str, reserve: int = 0) -> str:
        """The step-context message, fitted to the budget less ``reserve`` tokens kept for later turns."""
        c = self.scaffold.context
        if reserve:
            try:
                return fit_context(
                    ctx,
                    system,
                    instruction,
                    self.counter,
                    c.max_prompt_tokens - reserve,
                    c.max_observation_chars,
                )
            except ValueError:
                pass  # no room to reserve; later turns cut the context itself if they must
        return fit_context(
            ctx, system, instruction, self.counter, c.max_prompt_tokens, c.max_observation_chars
        )

    def _reserve(self, phase: str, n_turns: int) -> int:
        """Tokens to leave free after the step context: one more completion and its (cut) results.

        The context is fitted once per phase, so later turns of the phase (and the action commit after PLAN)
        reuse it unchanged (a longer cached prefix on the server); they fit by dropping earlier turns first.
        It depends only on the scaffold and the counter, so ``__init__`` computes it once per phase kind.
        """
        tails = [MORE_OPS] if n_turns > 1 else []
        if phase == "plan" and n_turns >= 1:
            tails.append(self.scaffold.prompts.action)
        if not tails:
            return 0
        m = self.scaffold.sampling.memory_max_tokens
        completion = max(m, self.counter.count("x" * 4 * m))  # ~4 bytes per token of English text
        results = max(self.counter.count(results_message(DROPPED, tail)) for tail in tails)
        return completion + results + 2 * PER_MESSAGE_TOKENS

    def _sampling(self, max_tokens: int, t: int, phase: str, turn: int) -> SamplingParams:
        """A request's sampling: the scaffold's, with a seed of its own when the agent has a sampling seed."""
        sc = self.scaffold.sampling
        seed = None
        if self.sampling_seed is not None:
            phase_no = {"log": 1, "plan": 2, "action": 3}[phase]
            seed = (self.sampling_seed * 1_000_003 + t * 1009 + phase_no * 101 + turn) % (2**31 - 1)
        return SamplingParams(sc.temperature, sc.top_p, max_tokens, seed=seed)

    async def _call(self, route, messages, sampling, constraint, tally):
        res = await route.client.chat(messages, model=route.model, sampling=sampling, constraint=constraint)
        tally.turns += 1
        tally.prompt_tokens += res.prompt_tokens
        tally.completion_tokens += res.completion_tokens
        tally.llm_seconds += res.latency_s
        return res

    async def _memory_phase(self, phase, t, system, phash, ctx, store, emit, tally, episode_id):
        """Run a phase's memory turns; returns (context message, turns, refit) for the commit, or None."""
        sc = self.scaffold
        n_turns = sc.turns.log_turns if phase == "log" else sc.turns.plan_turns
        if n_turns == 0:
            return None
        instruction = sc.prompts.log if phase == "log" else sc.prompts.plan
        enabled = self._log_ops if phase == "log" else self._plan_ops
        constraint = OutputConstraint(self._grammar[phase]) if sc.constrained else None
        budget = sc.context.max_prompt_tokens
        context = self._user(system, ctx, instruction, self._reserve_tokens[phase])

        def refit(tokens: int) -> str:
            # Only when a later turn cannot fit otherwise: the model has seen the whole observation in this
            # phase's first turn, so here it may be cut further than a first turn's would be.
            return fit_context(
                ctx,
                system,
                instruction,
                self.counter,
                tokens,
                sc.context.max_observation_chars,
                min_observation_chars=0,
                best_effort=True,
            )

        turns: list[MemoryTurn] = []
        messages = [{"role": "system", "content": system}, {"role": "user", "content": context}]
        est = count_messages(self.counter, messages)
        for k in range(n_turns):
            if turns:
                messages, est = fit_conversation(
                    system, context, turns, MORE_OPS, self.counter, budget, refit
                )
            sampling = self._sampling(sc.sampling.memory_max_tokens, t, phase, k)
            res = await self._call(self.memory_route, messages, sampling, constraint, tally)
            parsed = parse(res.text, enabled)
            results = execute(
                store, parsed, enabled=enabled, read_only=phase == "plan", step=t, phase=phase, turn=k
            )
            emit(
                TurnEvent(
                    episode_id=episode_id,
                    step=t,
                    phase=phase,
                    turn=k,
                    model=self.memory_route.model,
                    prompt_tokens=res.prompt_tokens,
                    prompt_tokens_est=est,
                    prefix_hash=phash,
                    completion=res.text,
                    completion_tokens=res.completion_tokens,
                    latency_s=res.latency_s,
                    constraint=constraint.regex if constraint else None,
                    results=[r.to_json() for r in results],
                    messages=[dict(m) for m in messages[1:]],
                )
            )
            turns.append(MemoryTurn(res.text, "\n".join(r.render() for r in results) or "(no operations)"))
            if not (k + 1 < n_turns and parsed):
                break
        return context, turns, refit

    async def _commit(self, t, phash, convo, est, names, emit, tally, episode_id):
        """Ask for the game action; ``est`` is the prompt's token count on the client."""
        sc = self.scaffold
        messages = [dict(m) for m in convo]
        constraint = OutputConstraint(action_regex(names)) if sc.constrained else None
        sampling = self._sampling(sc.sampling.action_max_tokens, t, "action", 0)
        res = await self._call(self.action_route, messages, sampling, constraint, tally)
        index = parse_action(res.text, names)
        valid = index is not None
        emit(
            TurnEvent(
                episode_id=episode_id,
                step=t,
                phase="action",
                turn=0,
                model=self.action_route.model,
                prompt_tokens=res.prompt_tokens,
                prompt_tokens_est=est,
                prefix_hash=phash,
                completion=res.text,
                completion_tokens=res.completion_tokens,
                latency_s=res.latency_s,
                constraint=constraint.regex if constraint else None,
                action=names[index] if index is not None else None,
                action_valid=valid,
                messages=[dict(m) for m in messages[1:]],
            )
        )
        return res.text, (index if index is not None else -1), valid


def parse_action(text: str, names: list[str]) -> int | None:
    """The action a completion names: the whole answer, else the first action name found in it, else None.

    Case counts only between names that differ by case alone (NetHack's ``letter g`` and ``letter G``): an
    exact match wins over a case-insensitive one.
    """
    first = text.strip().splitlines()[0] if text.strip() else ""
    cleaned = first.strip().strip("`'\".:,;*").strip()
    if cleaned in names:
        return names.index(cleaned)
    lowered = cleaned.lower()
    for i, n in enumerate(names):
        if n.lower() == lowered:
            return i
    # (position, -length, case differs, index): earliest, then longest, then the one written in its own case.
    found: list[tuple[int, int, bool, int]] = []
    for i, n in enumerate(names):
        m = re.search(rf"(?<![\w-]){re.escape(n.lower())}(?![\w-])", text.lower())
        if m:
            found.append((m.start(), -len(n), text[m.start() : m.end()] != n, i))
    return min(found)[3] if found else None


def _jsonable(info: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in info.items():
        if isinstance(v, str | int | float | bool) or v is None:
            out[k] = v
        elif isinstance(v, list | tuple) and all(isinstance(x, str | int | float | bool) for x in v):
            out[k] = list(v)
        elif isinstance(v, dict) and all(isinstance(x, str | int | float | bool) for x in v.values()):
            out[k] = {str(a): b for a, b in v.items()}
    return out
