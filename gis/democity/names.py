"""Plausible, synthetic Chinese street names (街巷名) for the demo city's road network.

Names are drawn deterministically from a random stream and are unique within one namer (one
city). Nothing here is a real street: the loader labels every name synthetic.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

# Optional first character of a name, with how often it is wanted relative to the others.
DIRECTIONS = {"": 4.0, "东": 1.5, "西": 1.5, "南": 1.5, "北": 1.5, "前": 0.5, "后": 0.5}
CLASSIC_WEIGHT = 3.0  # hand-picked words come up this much more often
# First and second characters of two-character name words, old-Beijing flavoured.
FIRST_CHARS = (
    "安永德福广和兴春光明新太长宣朝景文华平丰顺通惠瑞嘉金银石柳杨槐枣梅桃松竹白红黄青灯钱"
    "粮米盐铁砖瓦马牛羊鹤凤龙鼓钟织染酒茶花椿榆桂芳秀清宁泰康乐庆祥裕盛隆恒吉"
)
SECOND_CHARS = (
    "家市门桥庙寺营园坊井府厂庄口台湾河池塘坡村仓库铺店院场堂阁楼苑林树湖泉山岭岗屯堡亭塔关城沟渠"
)
# Hand-picked words that read like real old-city names (used first).
CLASSIC_WORDS = (
    "灯市", "米市", "钱粮", "礼士", "菊儿", "帽儿", "砖塔", "史家", "鼓楼", "钟楼", "琉璃",
    "椿树", "棉花", "铁树", "百花", "驴市", "羊肉", "骡马", "菜市", "果子", "金鱼", "炒豆",
    "南锣", "烟袋", "廊房", "珠市", "煤市", "粮食", "东厂", "西厂", "国子", "方家", "府学",
    "柳荫", "护国", "新开", "北新", "演乐", "本司", "内务", "干面", "船板", "石碑", "板井",
    "大乘", "宝产", "兵马", "丰盛", "太平", "永安", "广宁", "双槐", "三眼", "四眼", "花市",
)
SUFFIXES: dict[str, tuple[tuple[str, float], ...]] = {
    "arterial": (("大街", 0.45), ("路", 0.55)),
    "secondary": (("街", 0.5), ("路", 0.5)),
    "branch": (("路", 0.7), ("里", 0.3)),
    "alley": (("胡同", 0.7), ("巷", 0.3)),
}
NUMERALS = ("头", "二", "三", "四", "五", "六", "七", "八", "九", "十")
RING_NUMERALS = ("", "一", "二", "三", "四", "五", "六", "七", "八", "九")


def _stems() -> tuple[list[str], npt.NDArray[np.float64]]:
    """Every name stem (direction + two-character word) and how often it is wanted."""
    words = [a + b for a in FIRST_CHARS for b in SECOND_CHARS]
    stems: dict[str, float] = {}
    for direction, weight in DIRECTIONS.items():
        for word in CLASSIC_WORDS:
            stems.setdefault(direction + word, weight * CLASSIC_WEIGHT)
        for word in words:
            stems.setdefault(direction + word, weight)
    return list(stems), np.fromiter(stems.values(), dtype=np.float64)


class StreetNamer:
    """Hands out unique street names of a given road class (one namer per city)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._stems, self._weights = _stems()
        self._order: dict[str, np.ndarray] = {}
        self._next: dict[str, int] = {}
        self._used: set[str] = set()

    def _stem(self, road_class: str) -> str:
        """The next stem for `road_class` (each class walks its own shuffled order)."""
        if road_class not in self._order:
            # weighted random order (Efraimidis–Spirakis): frequent stems come up early
            keys = self._rng.random(len(self._stems)) ** (1.0 / self._weights)
            self._order[road_class] = np.argsort(-keys, kind="stable")
            self._next[road_class] = 0
        k = self._next[road_class]
        self._next[road_class] = k + 1
        base = self._stems[self._order[road_class][k % len(self._stems)]]
        lap = k // len(self._stems)  # ran out: reuse stems with an ordinal prefix
        return base if lap == 0 else f"{NUMERALS[lap % len(NUMERALS)]}{base}"

    def _take(self, candidate: str) -> bool:
        if candidate in self._used:
            return False
        self._used.add(candidate)
        return True

    def names(self, road_class: str, count: int) -> list[str]:
        """`count` new unique names for roads of `road_class` (e.g. 'alley' -> 'X胡同')."""
        suffixes, weights = zip(*SUFFIXES[road_class], strict=True)
        picks = self._rng.choice(len(suffixes), size=count, p=np.asarray(weights))
        out: list[str] = []
        for pick in picks:
            name = self._stem(road_class) + suffixes[pick]
            while not self._take(name):
                name = self._stem(road_class) + suffixes[pick]
            out.append(name)
        return out

    def numbered_alleys(self, count: int) -> list[str]:
        """A series of parallel alleys sharing one stem: X头条, X二条, X三条 … (count <= 10)."""
        while True:
            stem = self._stem("alley")
            series = [f"{stem}{NUMERALS[k]}条" for k in range(count)]
            if not any(name in self._used for name in series):
                self._used.update(series)
                return series

    def ring(self, number: int) -> str:
        """The name of the `number`-th ring road (二环路, 三环路, …; number 2..9)."""
        name = f"{RING_NUMERALS[number]}环路"
        self._used.add(name)
        return name
