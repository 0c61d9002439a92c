"""Synthetic people for the demo city: plausible Chinese names (common surnames weighted by
frequency, 1–2 character given names) and obviously synthetic mobile numbers, vectorised."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

StrArray = npt.NDArray[np.object_]

# Common surnames with approximate shares (%) of the population (public surname surveys;
# rounded, the tail is flattened).
SURNAMES: tuple[tuple[str, float], ...] = (
    ("王", 7.1), ("李", 7.0), ("张", 6.7), ("刘", 5.4), ("陈", 4.5), ("杨", 3.1), ("黄", 2.2),
    ("赵", 2.0), ("吴", 2.0), ("周", 1.9), ("徐", 1.6), ("孙", 1.5), ("马", 1.5), ("朱", 1.3),
    ("胡", 1.3), ("郭", 1.2), ("何", 1.2), ("高", 1.1), ("林", 1.1), ("罗", 0.9), ("郑", 0.9),
    ("梁", 0.9), ("谢", 0.8), ("宋", 0.8), ("唐", 0.8), ("许", 0.7), ("韩", 0.7), ("冯", 0.7),
    ("邓", 0.7), ("曹", 0.7), ("彭", 0.6), ("曾", 0.6), ("肖", 0.6), ("田", 0.6), ("董", 0.6),
    ("袁", 0.5), ("潘", 0.5), ("于", 0.5), ("蒋", 0.5), ("蔡", 0.5), ("余", 0.5), ("杜", 0.5),
    ("叶", 0.5), ("程", 0.5), ("苏", 0.4), ("魏", 0.4), ("吕", 0.4), ("丁", 0.4), ("任", 0.4),
    ("沈", 0.4), ("姚", 0.4), ("卢", 0.4), ("姜", 0.4), ("崔", 0.4), ("钟", 0.3), ("谭", 0.3),
    ("陆", 0.3), ("汪", 0.3), ("范", 0.3), ("金", 0.3), ("石", 0.3), ("廖", 0.3), ("贾", 0.3),
    ("夏", 0.3), ("韦", 0.3), ("付", 0.3), ("方", 0.3), ("白", 0.3), ("邹", 0.3), ("孟", 0.3),
    ("熊", 0.3), ("秦", 0.3), ("邱", 0.3), ("江", 0.3), ("尹", 0.2), ("薛", 0.2), ("闫", 0.2),
    ("段", 0.2), ("雷", 0.2), ("侯", 0.2), ("龙", 0.2), ("史", 0.2), ("陶", 0.2), ("黎", 0.2),
    ("贺", 0.2), ("顾", 0.2), ("毛", 0.2), ("郝", 0.2), ("龚", 0.2), ("邵", 0.2), ("万", 0.2),
    ("钱", 0.2), ("严", 0.2), ("武", 0.2), ("戴", 0.2), ("莫", 0.1), ("孔", 0.1), ("向", 0.1),
    ("常", 0.1), ("欧阳", 0.05), ("司马", 0.02), ("上官", 0.01),
)
# Characters common in given names, by the sex they are mostly given to; neutral ones in both.
_NEUTRAL = "文华明林海宇晨子佳思嘉安宁清云雨阳新永瑞祥康诚"
MALE_CHARS = tuple(
    "伟强磊军洋勇杰涛超刚建国志辉鹏浩凯健博俊峰波斌鑫亮成松飞旭东岩振兴德立庆福卫民跃忠义"
    + _NEUTRAL)
FEMALE_CHARS = tuple(
    "芳娜敏静丽艳娟霞英玲红燕婷欣怡悦涵琳颖晶莉秀兰桂梅凤春雪丹彤雯蕾倩璐薇萍慧月"
    + _NEUTRAL)
MOBILE_PREFIXES = tuple(
    [f"13{d}" for d in range(10)] + [f"15{d}" for d in (0, 1, 2, 3, 5, 6, 7, 8, 9)]
    + [f"18{d}" for d in range(10)]
)


def person_names(rng: np.random.Generator, n: int) -> StrArray:
    """`n` plausible names: weighted surname + a 1-character (30 %) or 2-character given name
    drawn from one sex's character pool."""
    names, weights = zip(*SURNAMES, strict=True)
    p = np.asarray(weights) / np.sum(weights)
    surnames = np.asarray(names, dtype=object)[rng.choice(len(names), size=n, p=p)]
    male = rng.random(n) < 0.5
    first, second = (_given_chars(rng, male) for _ in range(2))
    two = rng.random(n) < 0.7
    given = np.where(two, first + second, first)
    return np.asarray(surnames + given, dtype=object)


def _given_chars(rng: np.random.Generator, male: npt.NDArray[np.bool_]) -> StrArray:
    m = np.asarray(MALE_CHARS, dtype=object)
    f = np.asarray(FEMALE_CHARS, dtype=object)
    return np.where(male, m[rng.integers(0, len(m), size=male.size)],
                    f[rng.integers(0, len(f), size=male.size)])


def mobile_numbers(rng: np.random.Generator, n: int) -> StrArray:
    """`n` obviously synthetic 11-digit mobiles: 13x/15x/18x + `0000` + 4 random digits."""
    prefixes = np.asarray(MOBILE_PREFIXES, dtype=object)[
        rng.integers(0, len(MOBILE_PREFIXES), size=n)]
    tails = np.char.zfill(rng.integers(0, 10_000, size=n).astype(str), 4).astype(object)
    return np.asarray(prefixes + "0000" + tails, dtype=object)


def office_phones(rng: np.random.Generator, n: int) -> StrArray:
    """`n` synthetic Beijing landlines `010-6xxxxxxx` (department hotlines)."""
    tails = np.char.zfill(rng.integers(0, 10_000_000, size=n).astype(str), 7).astype(object)
    return np.asarray("010-6" + tails, dtype=object)
