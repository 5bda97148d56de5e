"""Compare our NetHack text with BALROG's on shared seeds and actions: what BALROG's text has that ours lacks.

BALROG's side runs in its own Python, one with the ``balrog-nle`` 0.9.0 wheel (NLE 0.9's fork with the language
observation), which must not go into this project's venv (it brings its own ``nle`` and ``gym``)::

    python3 -m venv /tmp/bvenv
    /tmp/bvenv/bin/pip install /tmp/balrog-nle/balrog_nle-0.9.0-*.whl  # or: pip install balrog-nle==0.9.0

Then, from the repository root::

    RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/balrog_compare_nethack.py \\
        --balrog-python /tmp/bvenv/bin/python --seeds 0 1 2 3 4 --steps 100

How BALROG builds its NetHack text (facts from balrog-ai/BALROG, ``balrog/environments/nle/``): ``gym.make`` of
``NetHackChallenge-v0`` with ``character="@"``, ``max_episode_steps=100_000``, ``no_progress_timeout=150``
(``config.yaml``'s ``nle_kwargs``); ``AutoMore`` answers every ``--More--`` with Enter and joins the top lines
it read (each ``--More--`` turned into a newline); the language wrapper in "hybrid" mode (no images) shows the
message, the language observation (``text_glyphs``), the cursor (``text_cursor`` and the terminal cursor as
``(x=column, y=row)``), the terminal rows 1-23 as the map (so the menus drawn over it and the two status lines),
and the inventory (``text_inventory``).

Both texts are made from the same game: ours (``--env``, default ``nethack-balrog-v0``) plays the seed and the
actions; every screen NLE showed is sent to the ``--balrog-python`` worker, which builds BALROG's parts from them
with ``balrog-nle``'s own ``NLELanguageObsv`` (the message joined over the step's ``--More--`` screens as
``AutoMore`` joins them). Playing the seed in balrog-nle's own game instead does not work: its NLE (0.9) makes
a different dungeon from the same seeds than ours (1.3) does, e.g. seed 2 starts the same Healer at x=40, y=4 there and
x=34, y=6 here; glyph numbers and ``blstats`` are the same in both (5,976 glyphs, 27 fields).

Actions: ``--steps`` actions per seed drawn from ``random.Random(seed)`` (moves mostly; commands that open menus,
questions and travel; item letters). Per seed it prints one JSON line, and one for all seeds, with, per category,
how many things BALROG's texts had (``balrog_had``), the steps where BALROG's text had something ours lacked
(``steps_with``), the number of such things (``items``), and examples (step, action, what was missing):

- ``message``: a sentence of BALROG's message (its ``--More--`` chain) absent from our message and prompt lines;
- ``menu``: a line of an open menu page (title, entries, page marker) absent from our text;
- ``cursor``: the terminal cursor on the map away from the player (travel, jump...) with no cursor line in ours;
- ``inventory_letter``: a letter of BALROG's inventory absent from ours;
- ``status``: a field of the bottom lines (``St:``, ``HP:``, ``Xp:``, hunger, the rank title, ``S:``...) absent
  from our status (``status_fields`` counts them by field);
- ``glyph_name``: a thing BALROG's language observation names that our text does not name in the same words
  (lexical: BALROG says "horizontal wall" where ours says "wall"; read the examples, not the count).

``--per-step`` also prints one JSON line per step with something missing. Not run by the tests.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_MENU_END = re.compile(r"\((?:end|\d+ of \d+)\)\s*$")
_CHOICES = re.compile(r"(\[[^\]]*\])")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_DISTANCE = re.compile(r"^(.*?) (?:adjacent|very near|near|far|very far)(?: .*)?$")
_CONDITIONS = {  # bottom-line word: ours (automem/envs/nethack_text.py's _CONDITIONS)
    "Stone": "turning to stone",
    "Slime": "turning to slime",
    "Strngl": "strangled",
    "FoodPois": "food poisoned",
    "TermIll": "terminally ill",
    "Ill": "terminally ill",
    "Blind": "blind",
    "Deaf": "deaf",
    "Stun": "stunned",
    "Conf": "confused",
    "Hallu": "hallucinating",
    "Lev": "levitating",
    "Fly": "flying",
    "Ride": "riding",
}
_WORDS = {  # hunger, encumbrance, alignment on the bottom lines: ours, lower case
    w: w.lower()
    for w in "Satiated Hungry Weak Fainting Fainted Burdened Stressed Strained Overtaxed Overloaded "
    "Lawful Neutral Chaotic".split()
}
# Our action names drawn from, with weights: moves mostly, then what opens menus, questions and travel.
_POOL = (
    [("north", 6), ("south", 6), ("east", 6), ("west", 6)]
    + [(d, 3) for d in ("northeast", "northwest", "southeast", "southwest")]
    + [(f"far {d}", 1) for d in ("north", "south", "east", "west")]
    + [(a, 2) for a in ("search", "wait", "more", "esc", "pickup")]
    + [(a, 1) for a in ("eat", "travel", "enhance", "inventory", "look", "apply", "drop", "wear", "takeoff")]
    + [(a, 1) for a in ("quaff", "read", "zap", "throw", "kick", "open", "down", "up")]
    + [(f"letter {c}", 1) for c in "abcdefgh"]
)


# --- BALROG's text: runs under --balrog-python, imports only what balrog-nle brings --------------------------------


def _array(spec: dict[str, Any], np: Any) -> Any:
    return np.frombuffer(base64.b64decode(spec["data"]), dtype=spec["dtype"]).reshape(spec["shape"]).copy()


def balrog_worker() -> None:
    """Read JSON lines of NLE arrays on stdin; print, per line, BALROG's hybrid text parts for them as JSON.

    A line holds ``screens`` (the ``tty_chars`` of every screen the step showed: the one the action gave, then one
    per ``--More--`` answered) and the last screen's ``glyphs``, ``blstats``, ``tty_cursor``, ``inv_strs`` and
    ``inv_letters``.
    """
    try:
        import numpy as np
        from nle import nle_language_obsv
    except Exception as exc:  # noqa: BLE001  (any failure here means: not a balrog-nle Python)
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return
    language = nle_language_obsv.NLELanguageObsv()
    for line in sys.stdin:
        job = json.loads(line)
        a = {k: _array(v, np) for k, v in job.items() if k != "screens"}
        screens = [_array(v, np) for v in job["screens"]]
        message = language.text_message(screens[0]).decode("latin-1")
        for screen in screens[1:]:  # AutoMore: each --More-- becomes a newline, the next top line is added
            message = message.replace("--More--", "\n") + language.text_message(screen).decode("latin-1")
        row, col = (int(v) for v in a["tty_cursor"])
        print(
            json.dumps(
                {
                    "message": message,
                    "glyphs": language.text_glyphs(a["glyphs"], a["blstats"]).decode("latin-1"),
                    "cursor": language.text_cursor(a["glyphs"], a["blstats"], a["tty_cursor"]).decode(
                        "latin-1"
                    )
                    + f"\n(x={col}, y={row})",
                    "tty_cursor": [row, col],
                    "screen": [bytes(r).decode("latin-1").rstrip() for r in screens[-1]],
                    "inventory": language.text_inventory(a["inv_strs"], a["inv_letters"]).decode("latin-1"),
                }
            ),
            flush=True,
        )


def run_balrog(python: str, jobs: list[str]) -> list[dict[str, Any]]:
    """BALROG's text parts for each job (a JSON line of arrays), from ``balrog_worker`` run by ``python``."""
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        sys.exit(f"balrog_compare_nethack: --balrog-python {python!r} is not an executable file (see --help)")
    proc = subprocess.run(
        [python, str(Path(__file__).resolve()), "--worker"],
        input="".join(j + "\n" for j in jobs),
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or len(lines) != len(jobs) or lines[0].get("error"):
        why = (
            lines[0]["error"]
            if lines and lines[0].get("error")
            else (proc.stderr.strip().splitlines() or ["?"])[-1]
        )
        sys.exit(
            f"balrog_compare_nethack: BALROG's side ({python}) failed: {why} (is balrog-nle 0.9.0 installed there? see --help)"
        )
    return lines


# --- our side and the comparison ----------------------------------------------------------------------------------


def _norm(text: str) -> str:
    return " ".join(text.split())


def _head(text: str) -> str:
    """Our message and prompt lines: everything before the surroundings."""
    return text.split("\nNext to you", 1)[0]


def _ours_letters(text: str) -> set[str]:
    lines = text.split("\nInventory:\n", 1)[-1].split("\n\n", 1)[0].splitlines()
    letters = {ln[0] for ln in lines if len(ln) > 1 and ln[1] == ":"}
    for ln in lines:
        short = re.search(r"letters (\S+) \(names left out", ln)
        if short:
            letters |= set(short.group(1))
    return letters


def _status_fields(screen: list[str]) -> dict[str, str]:
    """The bottom lines' fields and what our status says for each (the words ours must contain)."""
    line1, line2 = (screen[22] if len(screen) > 22 else ""), (screen[23] if len(screen) > 23 else "")
    want: dict[str, str] = {}
    rank = re.match(r"^\s*\S+ the (.+?)\s{2,}St:", line1)
    if rank:
        want["rank title"] = rank.group(1)
    for name, value in re.findall(r"\b(St|Dx|Co|In|Wi|Ch):(\S+)", line1):
        want[name] = f"{name} {value}"
    score = re.search(r"\bS:(\d+)", line1)
    if score:
        want["score"] = f"score {score.group(1)}"
    for pattern, field, form in (
        (r"Dlvl:(\d+)", "Dlvl", "dungeon level {}"),
        (r"\$:(\d+)", "$", "gold {}"),
        (r"HP:(\d+)\((\d+)\)", "HP", "HP {}/{}"),
        (r"Pw:(\d+)\((\d+)\)", "Pw", "Pw {}/{}"),
        (r"AC:(-?\d+)", "AC", "AC {}"),
        (r"Xp:(\d+)/(\d+)", "Xp", "experience level {} ({} points)"),
        (r"T:(\d+)", "T", "turn {}"),
    ):
        found = re.search(pattern, line2)
        if found:
            want[field] = form.format(*found.groups())
    for word in re.findall(r"[A-Z][a-zA-Z]+", line1 + " " + line2):
        if word in _WORDS:
            want[word] = _WORDS[word]
        elif word in _CONDITIONS:
            want[word] = _CONDITIONS[word]
    return want


def _menu_lines(screen: list[str]) -> list[str]:
    """An open menu page's lines, from the column its page marker starts at (``[]`` when none is open)."""
    end = next((i for i, r in enumerate(screen) if _MENU_END.search(r)), None)
    if end is None:
        return []
    col = _MENU_END.search(screen[end]).start()  # type: ignore[union-attr]
    return [r[col:].strip() for r in screen[: end + 1] if r[col:].strip()]


def missing(
    balrog: dict[str, Any], ours: str, pos: tuple[int, int]
) -> tuple[dict[str, list[str]], Counter[str]]:
    """What BALROG's observation says that ours does not, by category; and how many things of each category
    BALROG's observation had (what the gaps are out of)."""
    text, head = _norm(ours), _norm(_head(ours))
    seen: Counter[str] = Counter()
    out: dict[str, list[str]] = {}
    # balrog-nle writes a question's choices first ("[j or ?*]What do you want to eat?"): compared apart.
    parts = [p for part in balrog["message"].split("\n") for p in _CHOICES.split(part) if p.strip()]
    sentences = [s for part in parts for s in _SENTENCE.split(part.strip()) if s]
    seen["message"] = len(sentences)
    out["message"] = [s for s in sentences if _norm(s) not in head]
    menu = _menu_lines(balrog["screen"])
    seen["menu"] = len(menu)
    out["menu"] = [ln for ln in menu if _norm(ln) not in text]
    # The terminal cursor on the map, away from the player, with no menu or --More-- on the screen: the game is
    # selecting a position (travel, jump...).
    row, col = balrog["tty_cursor"]
    selecting = (
        1 <= row <= 21 and (col, row - 1) != pos and not menu and "--More--" not in balrog["screen"][0]
    )
    seen["cursor"] = int(selecting)
    out["cursor"] = (
        [balrog["cursor"].replace("\n", " ")] if selecting and "cursor" not in _head(ours).lower() else []
    )
    theirs = {ln[0] for ln in balrog["inventory"].splitlines() if len(ln) > 1 and ln[1] == ":"}
    seen["inventory_letter"] = len(theirs)
    out["inventory_letter"] = sorted(theirs - _ours_letters(ours))
    status = ours.split("\nStatus: ", 1)[-1].split("\n\n", 1)[0].lower()
    fields = _status_fields(balrog["screen"])
    seen["status"] = len(fields)
    out["status"] = [f"{k}: {v}" for k, v in fields.items() if v.lower() not in status]
    names = [m.group(1) for line in balrog["glyphs"].splitlines() if (m := _DISTANCE.match(line.strip()))]
    seen["glyph_name"] = len(names)
    out["glyph_name"] = [n for n in names if n.lower() not in text.lower()]
    return {k: v for k, v in out.items() if v}, seen


def _pack(array: Any) -> dict[str, Any]:
    return {
        "dtype": str(array.dtype),
        "shape": list(array.shape),
        "data": base64.b64encode(array.tobytes()).decode(),
    }


def compare(seed: int, steps: int, python: str, env_id: str, max_chars: int | None, per_step: bool) -> dict:
    """Play ``steps`` seeded actions in our env, get BALROG's text for the same screens, count the gaps."""
    sys.path.insert(0, str(ROOT))
    from automem.envs import make_env

    kwargs = {} if max_chars is None else {"max_chars": max_chars or None}
    env = make_env(env_id, **kwargs)
    rng = random.Random(seed)
    names, weights = zip(*_POOL, strict=True)
    actions = rng.choices(names, weights, k=steps)
    screens: list[
        dict[str, Any]
    ] = []  # NLE's observation of every raw step (the action, then --More-- answers)
    raw_step, raw_reset = env._env.step, env._env.reset

    def spy_step(index: int) -> Any:
        out = raw_step(index)
        screens.append({k: v.copy() for k, v in out[0].items()})  # NLE writes its arrays in place
        return out

    def spy_reset(*a: Any, **k: Any) -> Any:
        out = raw_reset(*a, **k)
        screens.append({k: v.copy() for k, v in out[0].items()})
        return out

    env._env.step, env._env.reset = spy_step, spy_reset
    texts, positions, jobs, taken = [], [], [], []
    text, info = env.reset(seed=seed)
    for step in range(steps + 1):
        if step:
            screens.clear()
            text, _, term, trunc, info = env.step(actions[step - 1])
            taken.append(actions[step - 1])
        else:
            del screens[1:]  # BALROG's AutoMore does not answer a --More-- at reset
        last = screens[-1]
        job = {k: _pack(last[k]) for k in ("glyphs", "blstats", "tty_cursor", "inv_strs", "inv_letters")}
        job["screens"] = [_pack(o["tty_chars"]) for o in screens]
        jobs.append(json.dumps(job))
        texts.append(text)
        positions.append((int(last["blstats"][0]), int(last["blstats"][1])))
        if step and (term or trunc):
            break
    env._env.step, env._env.reset = raw_step, raw_reset
    env.close()
    balrog = run_balrog(python, jobs)

    steps_with: Counter[str] = Counter()
    items: Counter[str] = Counter()
    fields: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    examples: dict[str, list] = {}
    for step, (ref, ours, pos) in enumerate(zip(balrog, texts, positions, strict=True)):
        action = taken[step - 1] if step else "(reset)"
        gaps, had = missing(ref, ours, pos)
        seen.update(had)
        for k, v in gaps.items():
            steps_with[k] += 1
            items[k] += len(v)
            if len(examples.setdefault(k, [])) < 3:
                examples[k].append([step, action, v[:3]])
        for entry in gaps.get("status", []):
            fields[entry.split(":", 1)[0]] += 1
        if per_step and gaps:
            print(json.dumps({"seed": seed, "step": step, "action": action, **gaps}))
    return {
        "seed": seed,
        "actions": len(taken),
        "observations": len(texts),
        "balrog_had": dict(seen),
        "steps_with": dict(steps_with),
        "items": dict(items),
        "status_fields": dict(fields),
        "examples": examples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Compare BALROG's NetHack text (balrog-nle's language wrapper, hybrid mode) with ours on "
        "shared seeds and actions; print, as JSON lines, what BALROG's text contains that ours lacks.",
        epilog="Example: .venv/bin/python benchmarks/balrog_compare_nethack.py --balrog-python /tmp/bvenv/bin/python",
    )
    parser.add_argument("--balrog-python", help="a Python with balrog-nle 0.9.0 installed (not this venv)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=100, help="actions per seed (default 100)")
    parser.add_argument("--env", default="nethack-balrog-v0", help="our env id (default nethack-balrog-v0)")
    parser.add_argument(
        "--max-chars", type=int, default=None, help="our observation budget; 0: none (default: the env's own)"
    )
    parser.add_argument("--per-step", action="store_true", help="also print each step's gaps")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        balrog_worker()
        return 0
    if not args.balrog_python:
        parser.error("--balrog-python is required (a Python with balrog-nle installed; see --help)")
    total_with: Counter[str] = Counter()
    total_items: Counter[str] = Counter()
    total_fields: Counter[str] = Counter()
    total_seen: Counter[str] = Counter()
    observations = actions = 0
    for seed in args.seeds:
        result = compare(seed, args.steps, args.balrog_python, args.env, args.max_chars, args.per_step)
        print(json.dumps(result))
        observations += result["observations"]
        actions += result["actions"]
        total_with.update(result["steps_with"])
        total_items.update(result["items"])
        total_fields.update(result["status_fields"])
        total_seen.update(result["balrog_had"])
    print(
        json.dumps(
            {
                "seeds": args.seeds,
                "observations": observations,
                "actions": actions,
                "balrog_had": dict(total_seen),
                "steps_with": dict(total_with),
                "items": dict(total_items),
                "status_fields": dict(total_fields),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
