"""The demo city's organisation: departments in the 1+5+N model, teams stationed in every
street office area (with capabilities, status, shift and a position on a road node), and the
people on the ground — 街长/巷长 and 小巷管家 on 街巷, 网格员 on grids.

Codes: a department is `{jurisdiction_code}.{dept_type}` (e.g. `110102.urban_management`,
`110102020.street_office`); a team is `{home_code}.{dept_type}.{nn}`.

Team capabilities are strings: a department type (`urban_management`: every class that lists
that type in the catalog, primary or assisting) or a class `{kind}:{code}` (`event:0504`: that
class too, whatever its departments).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, time
from typing import Any

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely

from gis.catalog import Catalog
from gis.democity.people import mobile_numbers, office_phones, person_names

IntArray = npt.NDArray[np.int64]

DISTRICT_NAMES = {
    "110101": "东城区", "110102": "西城区", "110105": "朝阳区", "110106": "丰台区",
    "110107": "石景山区", "110108": "海淀区", "110109": "门头沟区", "110111": "房山区",
    "110112": "通州区", "110113": "顺义区", "110114": "昌平区", "110115": "大兴区",
    "110116": "怀柔区", "110117": "平谷区", "110118": "密云区", "110119": "延庆区",
}
# 1 (core) + 5 (stationed) + N (on call), district level: dept_type -> (tier, name suffix).
DISTRICT_DEPARTMENTS: dict[str, tuple[str, str]] = {
    "urban_management": ("core", "城管执法局"),
    "public_security": ("stationed", "公安分局"),
    "fire": ("stationed", "消防救援支队"),
    "traffic": ("stationed", "交通支队"),
    "market_supervision": ("stationed", "市场监督管理局"),
    "food_drug": ("stationed", "食品药品监督管理局"),
    "housing": ("on_call", "房屋管理局"),
    "planning": ("on_call", "规划国土分局"),
    "landscaping": ("on_call", "园林绿化局"),
    "culture": ("on_call", "文化和旅游局"),
    "sanitation": ("on_call", "环境卫生服务中心"),
    "water": ("on_call", "水务局"),
    "municipal": ("on_call", "市政市容管理委员会"),
    "environment": ("on_call", "生态环境局"),
    "power": ("on_call", "供电公司"),
    "gas": ("on_call", "燃气分公司"),
    "heating": ("on_call", "热力分公司"),
    "telecom": ("on_call", "通信管线管理中心"),
}
STREET_OFFICE = "street_office"
# Teams every street office area gets first (1 + 5 + the street office's own patrol) ...
BASE_TEAMS = ("urban_management", "public_security", "fire", "traffic", "market_supervision",
              "food_drug", STREET_OFFICE)
# ... then further teams in this rotation (shifted per street so every type occurs).
EXTRA_TEAMS = ("sanitation", "urban_management", "landscaping", "water", "municipal",
               "public_security", "housing", "power", "gas", "environment", "heating",
               "telecom", "planning", "culture")
TEAM_NAMES = {
    "urban_management": "{s}城管执法队", "public_security": "{b}派出所巡逻组",
    "fire": "{b}消防救援站", "traffic": "{b}交警执勤组", "market_supervision": "{b}市场监管所",
    "food_drug": "{b}食药监管所", STREET_OFFICE: "{s}网格巡查队",
    "sanitation": "{b}环卫作业班", "landscaping": "{b}园林养护队", "water": "{b}水务抢修队",
    "municipal": "{b}市政养护队", "housing": "{b}房管所巡查组", "power": "{b}供电抢修班",
    "gas": "{b}燃气抢修队", "environment": "{b}环境监察组", "heating": "{b}热力抢修队",
    "telecom": "{b}通信抢修班", "planning": "{b}规划执法组", "culture": "{b}文化执法组",
}
# Classes some teams handle beyond their department type (by class name in the catalog).
SPECIALTIES: dict[str, tuple[str, ...]] = {
    "public_security": ("机动车乱停放", "消防通道堵塞"),
    STREET_OFFICE: ("非法小广告", "堆物堆料", "非机动车乱停放", "违规设置地桩地锁"),
    "urban_management": ("道路不洁", "沿街晾晒"),
    "fire": ("燃气管道破裂",),
    "sanitation": ("水域不洁",),
}
ORDINALS = ("", "二", "三", "四", "五", "六", "七", "八", "九")
STALE_AFTER_MIN = 30
# Round the clock (公安, 消防, utilities' repair crews), day shift, late shift.
SHIFTS = ((time(0, 0), time(23, 59)), (time(8, 0), time(17, 30)), (time(14, 0), time(22, 0)))
CROSS_BORDER_PRIORITY = ("110102020", "110106002")  # 广安门外街道 (西城) / 太平桥街道 (丰台)


# -- departments -------------------------------------------------------------------------

def departments(district_codes: Sequence[str], street_codes: Sequence[str] | Mapping[str, str],
                rng: np.random.Generator) -> pd.DataFrame:
    """Departments per district in the 1+5+N model (1 core 城管执法, 5 stationed, N on call)
    plus one street office (办事处, dept_type street_office, tier core: the territorial lead
    that blows the whistle) per street. `street_codes` may map code -> name."""
    rows: list[dict[str, str]] = []
    for d in sorted(district_codes):
        district = DISTRICT_NAMES.get(d, f"{d}区")
        for dtype, (tier, suffix) in DISTRICT_DEPARTMENTS.items():
            rows.append({"code": f"{d}.{dtype}", "name": district + suffix, "dept_type": dtype,
                         "tier": tier, "jurisdiction_code": d})
    names = street_codes if isinstance(street_codes, Mapping) else {}
    for s in sorted(street_codes):
        rows.append({"code": f"{s}.{STREET_OFFICE}", "name": office_name(s, names.get(s)),
                     "dept_type": STREET_OFFICE, "tier": "core", "jurisdiction_code": s})
    out = pd.DataFrame(rows, columns=["code", "name", "dept_type", "tier", "jurisdiction_code"])
    out["district_code"] = out["jurisdiction_code"].str[:6]
    out["phone"] = office_phones(rng, len(out))
    return out


def office_name(code: str, name: str | None) -> str:
    """The office of a 街道/镇: 广安门外街道 -> 广安门外街道办事处, 北宫镇 -> 北宫镇人民政府."""
    if not name:
        return f"街道办事处({code})"
    return name + ("人民政府" if name.endswith(("镇", "乡")) else "办事处")


# -- teams -------------------------------------------------------------------------------

def teams(departments: pd.DataFrame, streets_jurisdictions: gpd.GeoDataFrame,
          road_nodes: gpd.GeoDataFrame, rng: np.random.Generator, per_street: int, *,
          now: datetime | None = None, catalog: Catalog | None = None,
          cross_border: int = 2) -> pd.DataFrame:
    """`per_street` teams stationed in each street office area, each on a road node of that
    area (the nearest node when the area has none).

    Cross-border hard case: for the `cross_border` street pairs with the longest shared
    district border (广外 110102020 / 太平桥 110106002 first when both exist), each side's
    城管执法队 is positioned on the other side, on the road node nearest the shared border
    (10–400 m in): for an incident near that border the nearest capable team then belongs to
    the other district. Those rows have `placement == 'cross_border'`; `position_code` is the
    street the team stands in. Positions are metric (`x`, `y` in METRIC_CRS).
    """
    streets = _street_frame(streets_jurisdictions)
    now_ts = pd.Timestamp(now if now is not None else pd.Timestamp.now(tz="Asia/Shanghai"))
    if now_ts.tzinfo is None:
        now_ts = now_ts.tz_localize("Asia/Shanghai")
    out = _team_rows(departments, streets, per_street)
    street_ix = out["street_ix"].to_numpy()
    nodes = _node_points(road_nodes)
    node_ix = _nodes_in_streets(streets, nodes, street_ix, rng)
    out["x"], out["y"] = shapely.get_x(nodes[node_ix]), shapely.get_y(nodes[node_ix])
    out["node_id"] = road_nodes["node_id"].to_numpy()[node_ix]
    out["placement"] = "home"
    out["position_code"] = out["home_code"]
    _cross_border(out, streets, nodes, road_nodes, cross_border)
    _status_and_shift(out, rng, now_ts)
    out["capabilities"] = _capabilities(out["dept_type"], catalog)
    out["phone"] = mobile_numbers(rng, len(out))
    return out.drop(columns=["street_ix"]).reset_index(drop=True)


def _street_frame(jur: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    streets = jur[jur["level"] == "street"] if "level" in jur.columns else jur
    return streets.sort_values("code").reset_index(drop=True)


def _team_rows(departments: pd.DataFrame, streets: gpd.GeoDataFrame,
               per_street: int) -> pd.DataFrame:
    dept_of = dict(zip(zip(departments["jurisdiction_code"], departments["dept_type"],
                           strict=True), departments["code"], strict=True))
    rows: list[dict[str, Any]] = []
    for i, (code, name) in enumerate(zip(streets["code"], streets["name"], strict=True)):
        types = list(BASE_TEAMS[:per_street])
        types += [EXTRA_TEAMS[(i * 5 + k) % len(EXTRA_TEAMS)]
                  for k in range(max(per_street - len(BASE_TEAMS), 0))]
        seen: dict[str, int] = {}
        for dtype in types:
            seen[dtype] = seen.get(dtype, 0) + 1
            owner = code if dtype == STREET_OFFICE else code[:6]
            rows.append({
                "code": f"{code}.{dtype}.{seen[dtype]:02d}",
                "name": _team_name(dtype, name, seen[dtype]),
                "department_code": dept_of.get((owner, dtype)),
                "dept_type": dtype, "home_code": code, "district_code": code[:6],
                "street_ix": i,
            })
    out = pd.DataFrame(rows)
    missing = out[out["department_code"].isna()]
    if not missing.empty:
        raise ValueError(f"no department for team {missing['code'].iloc[0]}")
    return out


def _team_name(dtype: str, street_name: str, n: int) -> str:
    base = street_name.removesuffix("街道").removesuffix("地区")
    name = TEAM_NAMES[dtype].format(s=street_name, b=base)
    return name if n == 1 else f"{name}{ORDINALS[min(n, 9) - 1]}分队"


def _node_points(road_nodes: gpd.GeoDataFrame) -> npt.NDArray[np.object_]:
    pts = np.asarray(road_nodes.geometry.values, dtype=object)
    if len(pts) == 0:
        raise ValueError("teams need road nodes to stand on")
    return pts


def _nodes_in_streets(streets: gpd.GeoDataFrame, nodes: npt.NDArray[np.object_],
                      street_ix: IntArray, rng: np.random.Generator) -> IntArray:
    """For each team (its street index), a random road node inside (or on) its street; the
    node nearest the street's representative point when the street holds none."""
    polys = np.asarray(streets.geometry.values, dtype=object)
    node_i, poly_i = shapely.STRtree(polys).query(nodes, predicate="intersects")
    order = np.lexsort((node_i, poly_i))
    node_i, poly_i = node_i[order], poly_i[order]
    counts = np.bincount(poly_i, minlength=len(polys))
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    c = counts[street_ix]
    pick = offsets[street_ix] + np.floor(rng.random(len(street_ix)) * c).astype(np.int64)
    chosen = np.full(len(street_ix), -1, dtype=np.int64)
    has = c > 0
    chosen[has] = node_i[pick[has]]
    if not has.all():
        reps = shapely.point_on_surface(polys[street_ix[~has]])
        chosen[~has] = shapely.STRtree(nodes).query_nearest(reps, all_matches=False)[1]
    return np.asarray(chosen, dtype=np.int64)


def border_pairs(streets: gpd.GeoDataFrame, min_shared_m: float = 50.0) -> pd.DataFrame:
    """Pairs of streets in different districts sharing a border, longest shared border first
    (the 广外/太平桥 pair before all others): columns a, b (street indexes), shared_m."""
    polys = np.asarray(streets.geometry.values, dtype=object)
    a, b = shapely.STRtree(polys).query(polys, predicate="intersects")
    codes = streets["code"].to_numpy().astype(str)
    district = streets["code"].astype(str).str[:6].to_numpy()
    keep = (a < b) & (district[a] != district[b])
    a, b = a[keep], b[keep]
    shared = shapely.length(shapely.intersection(shapely.boundary(polys[a]),
                                                 shapely.buffer(polys[b], 1.0)))
    pairs = pd.DataFrame({"a": a, "b": b, "shared_m": shared})
    pairs = pairs[pairs["shared_m"] >= min_shared_m]
    prio = {CROSS_BORDER_PRIORITY, CROSS_BORDER_PRIORITY[::-1]}
    first = np.array([(codes[x], codes[y]) in prio for x, y in zip(pairs["a"], pairs["b"],
                                                                  strict=True)], dtype=bool)
    pairs = pairs.assign(first=first).sort_values(["first", "shared_m"], ascending=False)
    return pairs.drop(columns=["first"]).reset_index(drop=True)


def _cross_border(out: pd.DataFrame, streets: gpd.GeoDataFrame, nodes: npt.NDArray[np.object_],
                  road_nodes: gpd.GeoDataFrame, n_pairs: int) -> None:
    """Move each side's first 城管执法队 of the top border pairs just across the line."""
    if n_pairs <= 0:
        return
    polys = np.asarray(streets.geometry.values, dtype=object)
    tree = shapely.STRtree(nodes)
    for a, b in border_pairs(streets)[["a", "b"]].head(n_pairs).itertuples(index=False):
        for home, there in ((a, b), (b, a)):
            node = _node_across(tree, nodes, polys[home], polys[there])
            rows = out.index[(out["street_ix"] == home)
                             & (out["dept_type"] == "urban_management")]
            if node < 0 or rows.empty:
                continue
            r = rows[0]
            out.loc[r, ["x", "y"]] = [shapely.get_x(nodes[node]), shapely.get_y(nodes[node])]
            out.loc[r, "node_id"] = road_nodes["node_id"].to_numpy()[node]
            out.loc[r, "placement"] = "cross_border"
            out.loc[r, "position_code"] = streets["code"].iloc[there]


def _node_across(tree: shapely.STRtree, nodes: npt.NDArray[np.object_], home: Any,
                 there: Any, lo: float = 10.0, hi: float = 400.0) -> int:
    """The node inside `there`, `lo`–`hi` m from `home`, nearest to `home` (-1: none)."""
    cand = tree.query(shapely.buffer(home, hi), predicate="intersects")
    if len(cand) == 0:
        return -1
    inside = shapely.contains_properly(there, nodes[cand])
    dist = shapely.distance(home, nodes[cand])
    ok = inside & (dist >= lo) & (dist <= hi)
    if not ok.any():
        return -1
    return int(cand[ok][np.argmin(dist[ok])])


def _status_and_shift(out: pd.DataFrame, rng: np.random.Generator, now: pd.Timestamp) -> None:
    n = len(out)
    out["status"] = rng.choice(["available", "busy", "off_duty", "out_of_service"], size=n,
                               p=[0.74, 0.13, 0.10, 0.03])
    round_clock = out["dept_type"].isin(["fire", "public_security", "water", "gas", "power",
                                         "heating"]).to_numpy()
    late = rng.random(n) < 0.3
    shift = np.where(round_clock, 0, np.where(late, 2, 1))
    out["shift_start"] = np.asarray([a for a, _ in SHIFTS], dtype=object)[shift]
    out["shift_end"] = np.asarray([b for _, b in SHIFTS], dtype=object)[shift]
    fire = (out["dept_type"] == "fire").to_numpy()
    out["members"] = np.where(fire, rng.integers(6, 13, n), rng.integers(2, 7, n)).astype(
        np.int16)
    stale_p = np.where(out["status"].isin(["off_duty", "out_of_service"]), 0.6, 0.08)
    stale = rng.random(n) < stale_p
    age_min = np.where(stale, rng.uniform(STALE_AFTER_MIN + 1, 360, n),
                       np.minimum(rng.exponential(4.0, n), STALE_AFTER_MIN - 5))
    out["position_at"] = (now - pd.to_timedelta(np.round(age_min * 60), unit="s")).floor("s")


def _capabilities(dept_types: pd.Series, catalog: Catalog | None) -> list[list[str]]:
    extra: dict[str, list[str]] = {}
    if catalog is not None:
        by_name = dict(zip(catalog.classes["name"], catalog.classes["kind"] + ":"
                           + catalog.classes["code"], strict=True))
        extra = {t: [by_name[c] for c in names if c in by_name]
                 for t, names in SPECIALTIES.items()}
    return [[t, *extra.get(t, [])] for t in dept_types]


# -- people ------------------------------------------------------------------------------

STREET_CHIEF_POSTS = ("街道办事处副主任", "街道工委副书记", "副处长", "街道办事处主任",
                      "街道工委委员")
ALLEY_CHIEF_POSTS = ("科长", "副科长", "城市管理办公室科长", "社区建设办公室科长",
                     "平安建设办公室科长")
CHIEF_SPAN = {"street_chief": 3, "alley_chief": 4}  # 街巷 one cadre looks after, at most
ROLE_POSTS = {"street_chief": STREET_CHIEF_POSTS, "alley_chief": ALLEY_CHIEF_POSTS}


def people_and_assignments(
    jiexiang: gpd.GeoDataFrame, grids: gpd.GeoDataFrame, rng: np.random.Generator, *,
    office_names: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """People (街长/巷长, 小巷管家, 网格员) and their assignments.

    One chief per 街巷 row: 街长 (street_chief, a deputy-director-level cadre) on arterial,
    secondary and branch streets, 巷长 (alley_chief, a section-level cadre) on alleys; a cadre
    looks after up to 3 streets / 4 alleys of one street office. 1–2 小巷管家 (steward,
    volunteers) per branch or alley 街巷; one 网格员 (grid_worker) per grid.
    Returns (people, street_assignments, grid_assignments); person_id counts from 1.
    """
    names = dict(office_names or {})
    chiefs, chief_people = _chiefs(jiexiang, rng, names)
    stewards, steward_people = _stewards(jiexiang, rng, names)
    grid_people = _grid_workers(grids, names)
    people = pd.concat([chief_people, steward_people, grid_people], ignore_index=True)
    people.insert(0, "person_id", np.arange(1, len(people) + 1, dtype=np.int64))
    people["name"] = person_names(rng, len(people))
    people["phone"] = mobile_numbers(rng, len(people))
    n_chief, n_steward = len(chief_people), len(steward_people)
    chiefs["person_id"] = people["person_id"].to_numpy()[chiefs.pop("local").to_numpy()]
    stewards["person_id"] = people["person_id"].to_numpy()[
        n_chief + stewards.pop("local").to_numpy()]
    street_assignments = pd.concat([chiefs, stewards], ignore_index=True)[
        ["street_key", "person_id", "role"]]
    grid_assignments = pd.DataFrame({
        "grid_code": grids["code"].to_numpy(),
        "person_id": people["person_id"].to_numpy()[n_chief + n_steward:],
        "role": "grid_worker",
    })
    cols = ["person_id", "name", "phone", "post", "organisation", "district_code"]
    return people[cols], street_assignments, grid_assignments


def _organisation(office_codes: pd.Series, district_codes: pd.Series,
                  names: Mapping[str, str]) -> pd.Series:
    office = office_codes.astype(object).where(office_codes.notna(), None)
    return pd.Series([
        office_name(o, names.get(o)) if o else DISTRICT_NAMES.get(d, d) + "城市管理委员会"
        for o, d in zip(office, district_codes, strict=True)
    ], index=office_codes.index, dtype=object)


def _chiefs(jiexiang: gpd.GeoDataFrame, rng: np.random.Generator,
            names: Mapping[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Chief rows (street_key, role, local person index) and their people."""
    j = pd.DataFrame({
        "street_key": jiexiang["street_key"].to_numpy(),
        "role": np.where(jiexiang["road_class"].to_numpy() == "alley", "alley_chief",
                         "street_chief"),
        "office": jiexiang["street_office_code"].astype(object).fillna("").to_numpy(),
        "district_code": jiexiang["district_code"].to_numpy(),
    })
    group = j.groupby(["office", "role"], sort=True)
    size = group["street_key"].transform("size").to_numpy()
    span = j["role"].map(CHIEF_SPAN).to_numpy()
    pool = np.ceil(size / span).astype(np.int64)  # cadres per (office, role)
    slot = group.cumcount().to_numpy() % pool
    first = group.ngroup().to_numpy()
    pool_per_group = pd.Series(pool).groupby(first).first().sort_index()
    start = np.concatenate([[0], np.cumsum(pool_per_group.to_numpy())[:-1]])
    j["local"] = start[first] + slot
    people = j.drop_duplicates("local").sort_values("local")
    posts = np.empty(len(people), dtype=object)
    for role, choices in ROLE_POSTS.items():
        m = (people["role"] == role).to_numpy()
        posts[m] = np.asarray(choices, dtype=object)[rng.integers(0, len(choices), m.sum())]
    org = _organisation(people["office"].replace("", None), people["district_code"], names)
    chief_people = pd.DataFrame({"post": posts, "organisation": org.to_numpy(),
                                 "district_code": people["district_code"].to_numpy()})
    return j[["street_key", "role", "local"]].copy(), chief_people


def _stewards(jiexiang: gpd.GeoDataFrame, rng: np.random.Generator,
              names: Mapping[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """1–2 小巷管家 per branch/alley 街巷 (new people each)."""
    small = jiexiang[jiexiang["road_class"].isin(["branch", "alley"])]
    k = rng.integers(1, 3, size=len(small))
    rep = np.repeat(np.arange(len(small)), k)
    rows = small.iloc[rep]
    org = _organisation(rows["street_office_code"], rows["district_code"], names)
    people = pd.DataFrame({
        "post": np.where(rng.random(len(rows)) < 0.6, "小巷管家（居民志愿者）",
                         "小巷管家（商户志愿者）"),
        "organisation": org.to_numpy(), "district_code": rows["district_code"].to_numpy(),
    })
    stewards = pd.DataFrame({"street_key": rows["street_key"].to_numpy(), "role": "steward",
                             "local": np.arange(len(rows), dtype=np.int64)})
    return stewards, people


def _grid_workers(grids: gpd.GeoDataFrame, names: Mapping[str, str]) -> pd.DataFrame:
    codes = grids["code"].astype(str)
    org = _organisation(codes.str[:9], codes.str[:6], names)
    return pd.DataFrame({"post": "专职网格员", "organisation": org.to_numpy(),
                         "district_code": codes.str[:6].to_numpy()})
