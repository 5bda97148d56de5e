"""Scaffold patches: what a reviewer may change, how a change is checked, and what it becomes.

A patch is data with the scaffold's own shape, every field optional: ``prompts``, ``files`` (the whole schema, its
purposes and initial content), ``operations`` (names from the registry), ``quotas``, ``context``, ``turns``,
``sampling`` and a few switches. Its pydantic model is generated from :class:`~automem.scaffold.schema.Scaffold`'s,
so its JSON schema (``patch_json_schema``) is what an LLM reviewer answers through structured outputs, and a field
added to the scaffold is patchable without touching this module. A patch cannot name the scaffold's identity
(``id``, ``parent_id``, ``env``): those are set here.

``apply_patch`` merges a patch into its parent (mappings merge field by field; lists are replaced whole) and checks
the result, in order: the strict schema (unknown keys, bad values, unknown operations), a real change (the content
id differs), and the context budget (the static prompt of the new scaffold fits on the env, as a rollout checks it).
Any failure raises :class:`PatchRejected` with a ``kind`` that the loop counts and a reason it records; the parent is
never touched and an invalid scaffold is never written. Patch text is only ever parsed as data: a prompt that
contains YAML or JSON stays a string.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from automem.memory.quotas import Quotas
from automem.scaffold.io import content_id, diff
from automem.scaffold.schema import ContextBudget, MemoryFile, Prompts, Sampling, Scaffold, TurnLimits

REJECT_KINDS = ("unparseable", "invalid", "unknown_operation", "over_budget", "no_change")
"""Why a patch was refused: not JSON or not a patch; fails the schema; names an operation the registry lacks; the
new scaffold's prompt does not fit its context budget; it changes nothing."""

IDENTITY = frozenset({"id", "parent_id", "env"})
"""Scaffold fields a patch may not set: the loop names candidates and keeps the environment."""

_PATCH_CONFIG = ConfigDict(extra="forbid", frozen=True)


def _partial(model: type[BaseModel], name: str) -> type[BaseModel]:
    """``model`` with every field optional (None: unchanged), its ranges kept (checked again on the merged scaffold)."""
    fields: dict[str, Any] = {}
    for n, f in model.model_fields.items():
        annotation: Any = f.annotation
        if f.metadata:  # keep the ranges (ge, le, ...) so the JSON schema carries them to a grammar
            annotation = Annotated[(annotation, *f.metadata)]  # type: ignore[valid-type]
        fields[n] = (annotation | None, Field(None, description=f.description))
    return create_model(name, __config__=_PATCH_CONFIG, __doc__=f"Changes to {model.__name__}.", **fields)


PromptsPatch = _partial(Prompts, "PromptsPatch")
QuotasPatch = _partial(Quotas, "QuotasPatch")
ContextPatch = _partial(ContextBudget, "ContextPatch")
TurnsPatch = _partial(TurnLimits, "TurnsPatch")
SamplingPatch = _partial(Sampling, "SamplingPatch")
_NESTED: dict[str, type[BaseModel]] = {
    "prompts": PromptsPatch,
    "quotas": QuotasPatch,
    "context": ContextPatch,
    "turns": TurnsPatch,
    "sampling": SamplingPatch,
}


def _patch_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {
        "rationale": (
            str,
            Field(
                "",
                max_length=600,
                description="Why this change should help, from what the episodes show (600 characters at most).",
            ),
        ),
    }
    for n, f in Scaffold.model_fields.items():
        if n in IDENTITY:
            continue
        if n in _NESTED:
            annotation: Any = _NESTED[n]
        elif n == "files":
            annotation = list[MemoryFile]
        elif n == "operations":
            annotation = list[str]
        else:
            annotation = f.annotation
        desc = f.description or ""
        if n == "files":
            desc += " The whole list: files left out are removed from the schema."
        fields[n] = (annotation | None, Field(None, description=desc))
    return fields


ScaffoldPatch: type[BaseModel] = create_model(
    "ScaffoldPatch",
    __config__=_PATCH_CONFIG,
    __doc__="A change to a scaffold: set only the fields to change; nested sections merge field by field.",
    **_patch_fields(),
)


def patch_json_schema() -> dict[str, Any]:
    """The JSON schema of a patch, for structured outputs (generated from the scaffold's pydantic model)."""
    return ScaffoldPatch.model_json_schema()


def _errors(exc: ValidationError) -> str:
    """Every failing field on one line: ``quotas.max_ops_per_turn: Input should be ...; id: unknown key``."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown key (not in the schema)" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{where}: {msg.removeprefix('Value error, ')}")
    return "; ".join(parts)


class PatchRejected(ValueError):
    """A patch that is not applied; ``kind`` is one of ``REJECT_KINDS``."""

    def __init__(self, kind: str, reason: str) -> None:
        assert kind in REJECT_KINDS, kind
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def parse_patch(answer: str | dict[str, Any]) -> BaseModel:
    """A reviewer's answer (JSON text or a mapping) as a :data:`ScaffoldPatch`.

    Raises:
        PatchRejected: ``unparseable`` (not a JSON object) or ``invalid`` (unknown field, wrong type; named).
    """
    if isinstance(answer, str):
        try:
            answer = json.loads(answer)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise PatchRejected("unparseable", f"the answer is not JSON: {exc}") from None
    if not isinstance(answer, dict):
        raise PatchRejected("unparseable", f"the answer is JSON but not an object ({type(answer).__name__})")
    try:
        return ScaffoldPatch.model_validate(answer)
    except ValidationError as exc:
        raise PatchRejected("invalid", f"not a patch: {_errors(exc)}") from None


def patch_dict(patch: BaseModel) -> dict[str, Any]:
    """The fields a patch sets (without the rationale), as JSON values."""
    data = patch.model_dump(mode="json", exclude_none=True)
    data.pop("rationale", None)
    return data


def _merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in change.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclass(frozen=True)
class Candidate:
    """A checked scaffold made from a parent and a patch."""

    scaffold: Scaffold
    content_id: str
    parent_content_id: str
    diff: str
    patch: dict[str, Any]
    rationale: str


def candidate_id(family: str, cid: str) -> str:
    """The scaffold id of an evolved scaffold: its family and content id (``crafter-evo-1a2b3c4d5e``)."""
    return f"{family}-evo-{cid[:10]}"


def apply_patch(
    parent: Scaffold,
    patch: BaseModel | dict[str, Any] | str,
    *,
    env_id: str | None = None,
    context_window: int = 4096,
    counter: Any = None,
) -> Candidate:
    """Merge ``patch`` into ``parent`` and check the result (see the module docstring for the order of checks).

    Args:
        parent: the scaffold being revised (unchanged).
        patch: a :data:`ScaffoldPatch`, or its JSON text or mapping (parsed by :func:`parse_patch`).
        env_id: the environment the scaffold plays, for the context-budget check (None: no check).
        context_window: the served model's context length.
        counter: the model's tokenizer (``TokenCounter``); None: a generous estimate.

    Raises:
        PatchRejected: the patch is not applied; ``kind`` says why.
    """
    if not isinstance(patch, BaseModel):
        patch = parse_patch(patch)
    change = patch_dict(patch)
    parent_cid = content_id(parent)
    data = _merge(parent.model_dump(mode="json"), change)
    data["parent_id"] = parent.id
    try:
        new = Scaffold.model_validate(data)
    except ValidationError as exc:
        kind = "unknown_operation" if "unknown operations" in str(exc) else "invalid"
        raise PatchRejected(kind, f"the patched scaffold is invalid: {_errors(exc)}") from None
    cid = content_id(new)
    if cid == parent_cid:
        raise PatchRejected("no_change", "the patch changes nothing")
    family = parent.env if parent.env != "any" else parent.id.split("-")[0]
    new = new.model_copy(update={"id": candidate_id(family, cid)})
    if env_id is not None:
        from automem.rollout.checks import check_scaffold_fits

        try:
            check_scaffold_fits(new, env_id, context_window, counter)
        except ValueError as exc:
            raise PatchRejected("over_budget", str(exc)) from None
    return Candidate(new, cid, parent_cid, diff(parent, new), change, str(getattr(patch, "rationale", "")))


__all__ = [
    "IDENTITY",
    "REJECT_KINDS",
    "Candidate",
    "PatchRejected",
    "ScaffoldPatch",
    "apply_patch",
    "candidate_id",
    "parse_patch",
    "patch_dict",
    "patch_json_schema",
]
