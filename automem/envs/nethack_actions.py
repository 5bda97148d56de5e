"""Action names for NetHack and MiniHack: BALROG's vocabulary, mapped onto NLE's action enums.

BALROG names NLE's actions by words (``north``, ``far east``, ``pickup``, ``esc``...) and exposes a fixed subset:
79 for NetHack, 33 for MiniHack (only those a task's action set contains). The names are BALROG's, so results
stay comparable (but for the digits, see below); the descriptions are ours. Each description ends with the key
the action types, because NetHack reads the same keys as answers: at ``What do you want to eat? [fg]``, the
action whose key is ``f`` picks item f.

Decision on MiniHack's small action set (kept as BALROG's, for comparable numbers): the Quest tasks offer 32 of
the 85 keys their game reads, with no ``esc`` and no key for most item letters (f, g, d... type nothing here), so
an item there can be unreachable: ``What do you want to eat? [d or ?*]``. BALROG passes such a question to its
agent, which gets out only by typing Enter (``more``), NetHack's "never mind"; every other key is refused as an
answer ("You don't have that object.") and the question comes back. Here the env cancels a question that no
action can answer at all (``nle_base``) and says so in the message; a question with some answers typeable stays
open, and ``more`` still cancels it. Adding ``esc`` and letter actions would let the agent use every item, at the
price of numbers no longer comparable with BALROG's (its Quest agents cannot either).

Menus are the one place where MiniHack here departs from BALROG (``automem/envs/minihack.py`` has the sources):
BALROG's NLE (``balrog-nle`` 0.9.0, ``allow_all_modes=False``) closes every menu with nothing chosen, so ``pickup``
on the Quest's start square (a wand and a horn: "Pick up what?") picks up nothing there and the Quest cannot be
won. Here the menu stays open, and the same keys answer it: ``apply`` types ``a`` (select entry a), ``southwest``
``b``, ``pickup`` ``,`` (select the page), ``more`` Enter (confirm). Whether the wand can then be zapped depends on
its inventory letter being one of these keys, as in any NetHack question here.
"""

from __future__ import annotations

from typing import Any

from automem.envs.base import ActionSpec

_DIRS = [("north", "N"), ("east", "E"), ("south", "S"), ("west", "W")]
_DIRS += [("northeast", "NE"), ("southeast", "SE"), ("southwest", "SW"), ("northwest", "NW")]

# name -> (enum class in nle.nethack, member, description)
_TABLE: dict[str, tuple[str, str, str]] = {}
for _word, _member in _DIRS:
    _TABLE[_word] = ("CompassDirection", _member, f"move one square {_word} (attacks a monster there)")
for _word, _member in _DIRS:
    _TABLE[f"far {_word}"] = ("CompassDirectionLonger", _member, f"move {_word} until something interesting")
_TABLE.update(
    {
        "up": ("MiscDirection", "UP", "climb the staircase or ladder up you stand on"),
        "down": ("MiscDirection", "DOWN", "go down the staircase or ladder you stand on"),
        "wait": ("MiscDirection", "WAIT", "rest one turn"),
        "more": (
            "MiscAction",
            "MORE",
            "show the rest of a message that ends with --More--; at a question, Enter means never mind; "
            "in a menu, it confirms what is selected",
        ),
        "annotate": ("Command", "ANNOTATE", "write a note about this level"),
        "apply": ("Command", "APPLY", "use a tool (pick-axe, key, lamp, horn...)"),
        "call": ("Command", "CALL", "give a name to a monster, an object or a kind of object"),
        "cast": ("Command", "CAST", "cast a spell you know"),
        "close": ("Command", "CLOSE", "close a door next to you"),
        "open": ("Command", "OPEN", "open a door next to you"),
        "dip": ("Command", "DIP", "dip an object into a potion or a fountain"),
        "drop": ("Command", "DROP", "drop one item"),
        "droptype": ("Command", "DROPTYPE", "drop several items, chosen by type"),
        "eat": ("Command", "EAT", "eat something (when hungry)"),
        "esc": ("Command", "ESC", "cancel the current menu, prompt or message"),
        "engrave": ("Command", "ENGRAVE", "write on the floor (Elbereth frightens most monsters)"),
        "enhance": ("Command", "ENHANCE", "advance weapon skills you have practised"),
        "fire": ("Command", "FIRE", "shoot or throw what is in your quiver"),
        "fight": ("Command", "FIGHT", "attack in a direction even if no monster shows there"),
        "force": ("Command", "FORCE", "force the lock of a box with your weapon"),
        "inventory": ("Command", "INVENTORY", "show what you carry"),
        "invoke": ("Command", "INVOKE", "invoke the power of an artifact"),
        "jump": ("Command", "JUMP", "jump to a nearby square (if you can)"),
        "kick": ("Command", "KICK", "kick a locked door, a box, an object or a monster"),
        "look": ("Command", "LOOK", "look at what lies on your square"),
        "loot": ("Command", "LOOT", "open a box or bag on the floor"),
        "monster": ("Command", "MONSTER", "use the special ability of your current monster form"),
        "offer": ("Command", "OFFER", "sacrifice a fresh corpse on an altar"),
        "pay": ("Command", "PAY", "pay a shopkeeper"),
        "pickup": (
            "Command",
            "PICKUP",
            "pick up what lies on your square (several things: a menu, where ',' selects them all)",
        ),
        "pray": ("Command", "PRAY", "pray to your god for help (safe about once per 1000 turns)"),
        "puton": ("Command", "PUTON", "put on a ring, amulet or blindfold"),
        "quaff": ("Command", "QUAFF", "drink a potion (or from a fountain)"),
        "quiver": ("Command", "QUIVER", "choose what to fire"),
        "read": ("Command", "READ", "read a scroll or spellbook"),
        "remove": ("Command", "REMOVE", "remove a ring, amulet or blindfold"),
        "rub": ("Command", "RUB", "rub a lamp or a stone"),
        "search": ("Command", "SEARCH", "search the squares around you for hidden doors and passages"),
        "swap": ("Command", "SWAP", "swap your wielded and secondary weapons"),
        "takeoff": ("Command", "TAKEOFF", "take off one piece of armor"),
        "takeoffall": ("Command", "TAKEOFFALL", "take off all armor"),
        "teleport": ("Command", "TELEPORT", "teleport (only if you have the ability)"),
        "throw": ("Command", "THROW", "throw an item (a dagger, a dart...)"),
        "travel": (
            "Command",
            "TRAVEL",
            "travel to a map position; then type < or > for stairs, _ for an altar",
        ),
        "twoweapon": ("Command", "TWOWEAPON", "switch fighting with two weapons on or off"),
        "untrap": ("Command", "UNTRAP", "try to disarm a trap"),
        "wear": ("Command", "WEAR", "put on a piece of armor"),
        "wield": ("Command", "WIELD", "hold a weapon in your hands"),
        "wipe": ("Command", "WIPE", "wipe your face"),
        "zap": ("Command", "ZAP", "zap a wand"),
        "minus": ("TextCharacters", "MINUS", "type '-' (for example: fight bare-handed, or no item)"),
        "space": ("TextCharacters", "SPACE", "type a space (next page of a menu)"),
        "apos": ("TextCharacters", "APOS", "type an apostrophe"),
    }
)
# BALROG names these "0".."9"; here a digit string means an action index (validate_action), so they are
# "digit 0".."digit 9" to stay reachable by name.
for _d in range(10):
    _TABLE[f"digit {_d}"] = ("TextCharacters", f"NUM_{_d}", f"type the digit {_d} (counts, menu choices)")

_MINIHACK_NAMES = (
    [w for w, _ in _DIRS]
    + [f"far {w}" for w, _ in _DIRS]
    + [
        "up",
        "down",
        "wait",
        "more",
        "apply",
        "close",
        "open",
        "eat",
        "force",
        "kick",
        "loot",
        "pickup",
        "pray",
    ]
    + ["puton", "quaff", "search", "zap"]
)
_NETHACK_NAMES = [n for n in _TABLE]


def key_name(code: int) -> str:
    """The key an action code types, readable: ``e``, ``^D``, ``M-a``, ``Enter``, ``Esc``."""
    if code == 13:
        return "Enter"
    if code == 27:
        return "Esc"
    if code == 32:
        return "Space"
    if code < 32:
        return "^" + chr(code + 64)
    if code >= 128:
        return "M-" + chr(code - 128)
    return chr(code)


def action_set(env_actions: tuple[Any, ...], family: str) -> tuple[list[ActionSpec], list[int]]:
    """The named actions an NLE env offers and, for each, its index in the env's action tuple.

    Args:
        env_actions: The env's ``actions`` (NLE enums), in index order.
        family: ``"nethack"`` or ``"minihack"`` (which of BALROG's subsets to use).
    """
    import nle.nethack as nh

    names = _NETHACK_NAMES if family == "nethack" else _MINIHACK_NAMES
    # Matched by key code, not enum class: tasks use other enums for the same keys (Boxoban's moves are
    # CompassCardinalDirection members), and each name here types a different key.
    position: dict[int, int] = {}
    for i, a in enumerate(env_actions):
        position.setdefault(int(a), i)
    specs: list[ActionSpec] = []
    indices: list[int] = []
    for name in names:
        klass, member, description = _TABLE[name]
        code = int(getattr(getattr(nh, klass), member))
        index = position.get(code)
        if index is None:
            continue
        specs.append(ActionSpec(name, f"{description} [key {key_name(code)}]"))
        indices.append(index)
    return specs, indices
