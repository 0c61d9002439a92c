"""Incident history: placement consistent with the geometry, temporal and spatial patterns an
operator would recognise, plausible workflow states, determinism — on the small synthetic
city of test_democity_org."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely
from test_democity_org import NOW, SmallCity, small_city

from gis.catalog import Catalog, load_catalog
from gis.democity.history import incidents
from gis.democity.model import rng_for

SOURCES = {"12345", "grid_worker", "street_chief", "steward", "citizen", "sensor", "other"}


@pytest.fixture(scope="module")
def city() -> SmallCity:
    return small_city()


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def _history(city: SmallCity, catalog: Catalog, seed: int = 1, days: int = 90,
             count: int = 20_000) -> pd.DataFrame:
    return incidents(catalog, city.jurisdictions, city.grids, city.buildings, city.jiexiang,
                     rng_for(seed, "history"), days=days, count=count, end=NOW)


def _is(history: pd.DataFrame, catalog: Catalog, name: str) -> pd.Series:
    """Rows of the class called `name` (codes repeat across 事件 and 部件: match both)."""
    row = catalog.classes.set_index("name").loc[name]
    return (history["event_kind"] == row["kind"]) & (history["event_code"] == row["code"])


@pytest.fixture(scope="module")
def history(city: SmallCity, catalog: Catalog) -> pd.DataFrame:
    return _history(city, catalog)


def test_rows_and_columns(history: pd.DataFrame, catalog: Catalog) -> None:
    assert len(history) == 20_000
    assert str(history["reported_at"].dt.tz) == "Asia/Shanghai"
    start = pd.Timestamp(NOW) - pd.Timedelta(days=90, hours=1)
    assert history["reported_at"].between(start, pd.Timestamp(NOW)).all()
    known = set(zip(catalog.classes["kind"], catalog.classes["code"], strict=True))
    assert set(zip(history["event_kind"], history["event_code"], strict=True)) <= known
    assert history["event_kind"].value_counts()["component"] > 1000
    assert set(history["source"]) <= SOURCES
    assert history["description"].str.len().between(4, 200).all()
    assert history["address"].str.fullmatch(r".+[0-9]+号").all()


def test_codes_match_the_point(history: pd.DataFrame, city: SmallCity) -> None:
    grids = city.grids.set_index("code").geometry
    pts = shapely.points(history["x"], history["y"])
    assert shapely.contains(grids.loc[history["grid_code"]].values, pts).all()
    assert (history["grid_code"].str[:12] == history["community_code"]).all()
    assert (history["community_code"].str[:9] == history["street_code"]).all()
    assert (history["street_code"].str[:6] == history["district_code"]).all()
    streets = city.streets.set_index("code").geometry
    assert shapely.covers(streets.loc[history["street_code"]].values, pts).all()


def test_building_is_the_one_containing_the_point(history: pd.DataFrame,
                                                  city: SmallCity) -> None:
    footprints = city.buildings.set_index("building_id").geometry
    has = history["building_id"].notna()
    assert 0.1 < has.mean() < 0.9
    inside = history[has]
    assert shapely.contains(footprints.loc[inside["building_id"].astype(int)].values,
                            shapely.points(inside["x"], inside["y"])).all()
    outside = history[~has]
    union = shapely.union_all(city.buildings.geometry.values)
    assert not shapely.contains(union, shapely.points(outside["x"], outside["y"])).any()


def test_daily_cycle_peaks_in_working_hours(history: pd.DataFrame) -> None:
    hour = history["reported_at"].dt.hour
    day, night = hour.between(9, 16).mean(), hour.between(0, 5).mean()
    assert day > 0.4 and day > 8 * night


def test_evening_classes_peak_in_the_evening(history: pd.DataFrame, catalog: Catalog) -> None:
    evening = history["reported_at"].dt.hour.between(18, 23)
    for name in ("噪声扰民", "露天烧烤"):
        assert evening[_is(history, catalog, name)].mean() > 0.45, name
    assert evening[_is(history, catalog, "非法小广告")].mean() < 0.25


def test_weekdays_busier_than_rest_days(history: pd.DataFrame, catalog: Catalog) -> None:
    days = history["reported_at"].dt.date
    workday = days.map(catalog.calendar.is_workday)
    per_day = history.groupby([days, workday]).size().groupby(level=1).mean()
    assert per_day[True] > 1.15 * per_day[False]


def test_seasonal_classes(city: SmallCity, catalog: Catalog) -> None:
    """Over half a year ending 20 November: 露天烧烤 is a summer thing, 积雪积冰 appears only
    once winter starts."""
    long = _history(city, catalog, days=180, count=30_000)
    month = long["reported_at"].dt.month
    bbq = _is(long, catalog, "露天烧烤")
    assert bbq[month.isin([7, 8])].mean() > 3 * bbq[month.isin([10, 11])].mean()
    snow = long[_is(long, catalog, "积雪积冰")]
    assert len(snow) > 0 and (snow["reported_at"].dt.month == 11).all()


def test_hot_spots_along_arterials(history: pd.DataFrame, city: SmallCity) -> None:
    j = city.jiexiang
    arterials = shapely.union_all(j.geometry[j["road_class"] == "arterial"].values)
    roads = shapely.union_all(j.geometry.values)
    extent = shapely.box(*city.grids.total_bounds)
    near = shapely.intersection(shapely.buffer(arterials, 30), extent)
    far = shapely.difference(extent, shapely.buffer(roads, 60))
    pts = shapely.points(history["x"], history["y"])
    density_near = shapely.contains(near, pts).sum() / near.area
    density_far = shapely.contains(far, pts).sum() / far.area
    assert density_near > 5 * density_far


def test_street_trading_on_branch_roads(history: pd.DataFrame, city: SmallCity,
                                        catalog: Catalog) -> None:
    j = city.jiexiang
    small = shapely.union_all(j.geometry[j["road_class"].isin(["branch", "alley"])].values)
    trade = history[_is(history, catalog, "占道经营")]
    near = shapely.distance(small, shapely.points(trade["x"], trade["y"])) <= 10
    everything = shapely.distance(small, shapely.points(history["x"], history["y"])) <= 10
    assert near.mean() > 0.6 and near.mean() > everything.mean() + 0.1


def test_households_draw_incidents(history: pd.DataFrame, city: SmallCity) -> None:
    per_building = history["building_id"].dropna().astype(int).value_counts()
    b = city.buildings.set_index("building_id")
    counts = per_building.reindex(b.index, fill_value=0)
    assert counts.corr(b["households"], method="spearman") > 0.3


def test_sources_mix(history: pd.DataFrame) -> None:
    share = history["source"].value_counts(normalize=True)
    assert 0.5 < share["12345"] < 0.62
    assert 0.18 < share["grid_worker"] < 0.3
    patrol = history["source"].isin(["grid_worker", "street_chief", "steward"])
    assert history.loc[patrol, "reported_at"].dt.hour.between(8, 18).all()


def test_workflow_states_and_closing_times(history: pd.DataFrame) -> None:
    status = history["status"]
    assert (status == "closed").mean() > 0.85
    closed = history[status == "closed"]
    assert (closed["closed_at"] > closed["reported_at"]).all()
    assert (closed["closed_at"] <= pd.Timestamp(NOW)).all()
    assert history.loc[status != "closed", "closed_at"].isna().all()
    open_ = history[status.isin(["pending", "registered", "dispatched", "handling"])]
    assert len(open_) > 20
    assert (open_["reported_at"] > pd.Timestamp(NOW) - pd.Timedelta(days=45)).all()
    recent = history["reported_at"] > pd.Timestamp(NOW) - pd.Timedelta(hours=6)
    assert (history.loc[recent, "status"] != "closed").mean() > 0.5
    assert set(status) <= {"pending", "registered", "dispatched", "handling", "closed",
                           "void", "ledger"}


def test_emergencies_close_faster(history: pd.DataFrame, catalog: Catalog) -> None:
    closed = history[history["status"] == "closed"]
    took = (closed["closed_at"] - closed["reported_at"]).dt.total_seconds() / 3600
    burst = took[_is(closed, catalog, "自来水管破裂")].median()
    illegal = took[_is(closed, catalog, "违法搭建")].median()
    assert burst < 6 < 3 * 24 < illegal


def test_deterministic_for_a_seed(city: SmallCity, catalog: Catalog,
                                  history: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(_history(city, catalog), history)
    other = _history(city, catalog, seed=2)
    assert not np.array_equal(other["x"].to_numpy(), history["x"].to_numpy())
