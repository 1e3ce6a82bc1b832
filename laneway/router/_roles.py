"""The ten α-roles an agent can play, each with its meaning."""

from __future__ import annotations

import enum
from typing import Any

from laneway.errors import ConfigError

_MEANINGS = {
    1: "observe and collect: gather raw signals, documents and tool output without judging them",
    2: "compress: condense what was collected into summaries that keep what matters",
    3: "validate: check inputs and results against rules, schemas and facts",
    4: "orchestrate: plan the work and break it into steps for other agents",
    5: "analyze: examine data to find patterns, causes and answers",
    6: "optimize: improve a plan or result against a stated objective",
    7: "monitor: watch running work and health, and raise alerts",
    8: "aggregate: merge the results of many agents into one",
    9: "execute: carry out actions and call tools",
    10: "coordinate: arbitrate between agents, settle conflicts and hand work over",
}


class AlphaRole(enum.Enum):
    """The α-roles (α1 observer … α10 coordinator); the value is the role's number.

    Example:
        >>> AlphaRole.VALIDATOR.symbol, AlphaRole.VALIDATOR.meaning.split(":")[0]
        ('α3', 'validate')
        >>> AlphaRole.coerce("α9") is AlphaRole.coerce("executor") is AlphaRole.EXECUTOR
        True
    """

    OBSERVER = 1
    COMPRESSOR = 2
    VALIDATOR = 3
    ORCHESTRATOR = 4
    ANALYZER = 5
    OPTIMIZER = 6
    MONITOR = 7
    AGGREGATOR = 8
    EXECUTOR = 9
    COORDINATOR = 10

    @property
    def symbol(self) -> str:
        """``"α1"`` … ``"α10"``."""
        return f"α{self.value}"

    @property
    def meaning(self) -> str:
        """What an agent in this role does."""
        return _MEANINGS[self.value]

    @classmethod
    def coerce(cls, value: Any) -> AlphaRole:
        """The role named by ``value``: a member, its number, ``"α3"``/``"alpha3"``, or its name in any case.

        Raises:
            ConfigError: ``value`` names no role.
        """
        if isinstance(value, AlphaRole):
            return value
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 10:
            return cls(value)
        if isinstance(value, str):
            text = value.strip().lower()
            for prefix in ("α", "alpha"):
                if text.startswith(prefix) and text[len(prefix):].isdigit():
                    return cls.coerce(int(text[len(prefix):]))
            member = cls.__members__.get(text.upper())
            if member is not None:
                return member
        raise ConfigError(
            f"role must be an AlphaRole, 1-10, 'α1'-'α10' or a role name ({', '.join(m.name.lower() for m in cls)}), "
            f"got {value!r}"
        )
