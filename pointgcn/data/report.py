"""What reading a data set repaired or dropped, per item (room, shape), so that every command that
reads the same files (`data prepare`, `train`) says the same thing about them: nothing is dropped
without a word, and the word is one line per item plus one summary line."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class DataReport:
    """Counts per item of what was repaired or dropped, keyed by phrases such as
    "non-finite lines dropped" (they are printed as `<count> <phrase>`)."""

    unit: str = "items"  # what an item is, plural: "rooms", "shapes"
    items: dict[str, Counter] = field(default_factory=dict)
    seen: int = 0  # items read, with or without anything to report

    def add(self, item: str, counts: dict[str, int]) -> None:
        self.seen += 1
        kept = Counter({what: int(n) for what, n in counts.items() if n})
        if kept:
            self.items.setdefault(item, Counter()).update(kept)

    def __bool__(self) -> bool:
        return bool(self.items)

    def totals(self) -> Counter:
        total = Counter()
        for counts in self.items.values():
            total.update(counts)
        return total

    def lines(self) -> list[str]:
        """One line per item with something to report, then the summary; none if clean."""
        if not self.items:
            return []
        out = [f"  {item}: {_phrase(counts)}" for item, counts in self.items.items()]
        out.append(f"data: {len(self.items)} of {self.seen} {self.unit} repaired or reduced: "
                   f"{_phrase(self.totals())}")
        return out


def _phrase(counts: Counter) -> str:
    return ", ".join(f"{n} {what}" for what, n in counts.items())
