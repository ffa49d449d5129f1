"""Data tables behind the instance generator: data-center regions, user metros, fiber cables, models.

Figures are rounded public values, good to the precision a synthetic benchmark needs (sources in
``docs/instances.md``):

* grid carbon intensity: annual average generation intensity, Ember *Global Electricity Review* /
  IEA, in t CO2 per MWh (e.g. France 0.056, Germany 0.381, United States 0.370, India 0.713);
* grid price: typical recent wholesale day-ahead average of the bidding zone / ISO, $/MWh;
* natural-gas price: regional hub or LNG import price, $/MMBtu (Henry Hub, TTF, JKM);
* ambient temperature: annual mean, seasonal half-swing and diurnal half-swing, °C (climate normals).

Regions are named like cloud regions (``us-east-va``); the generator appends ``-NNN`` when a region
hosts several sites.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Continent codes; the terrestrial fiber graph links nodes of one continent only, cables cross oceans.
CONTINENTS = ("NA", "SA", "EU", "AS", "OC", "AF")


@dataclass(frozen=True)
class Region:
    """A data-center region.

    Attributes
    ----------
    name : str
        Cloud-style region name, e.g. ``"us-east-va"``.
    lat, lon : float
        Location of the main campus, degrees.
    utc_offset : float
        Standard-time offset of local clock time from UTC, hours.
    continent : str
        One of :data:`CONTINENTS`.
    grid_co2 : float
        Annual mean grid carbon intensity, t CO2/MWh.
    price : float
        Mean wholesale electricity price, $/MWh.
    gas_price : float
        Natural-gas price, $/MMBtu.
    solar_rich : bool
        High solar penetration and irradiance: deep midday price and carbon dips, large PV.
    temp_mean, temp_seasonal, temp_diurnal : float
        Annual mean temperature, seasonal half-swing (warmest month above the mean; the sign follows
        the hemisphere in the generator) and diurnal half-swing, °C.
    weight : float
        Relative share of installed AI capacity, used when sampling regions for large presets.
    """

    name: str
    lat: float
    lon: float
    utc_offset: float
    continent: str
    grid_co2: float
    price: float
    gas_price: float
    solar_rich: bool
    temp_mean: float
    temp_seasonal: float
    temp_diurnal: float
    weight: float


def _r(*args) -> Region:
    return Region(*args)


# name, lat, lon, utc, continent, t/MWh, $/MWh, $/MMBtu, solar_rich, T mean, T season, T diurnal, weight
REGIONS: tuple[Region, ...] = (
    # North America (US ISO averages: PJM, MISO, ERCOT, CAISO, BPA, ...; US mean 0.370 t/MWh)
    _r("us-east-va", 39.04, -77.49, -5, "NA", 0.370, 45.0, 3.0, False, 13.0, 11.0, 5.5, 6.0),
    _r("us-east-oh", 39.96, -83.00, -5, "NA", 0.450, 42.0, 3.0, False, 11.5, 12.0, 5.5, 2.5),
    _r("us-southeast-ga", 33.75, -84.39, -5, "NA", 0.380, 44.0, 3.2, False, 17.0, 9.5, 5.5, 1.5),
    _r("us-central-ia", 41.26, -95.86, -6, "NA", 0.340, 32.0, 3.0, False, 10.5, 14.5, 6.0, 2.0),
    _r("us-south-tx", 29.42, -98.49, -6, "NA", 0.380, 38.0, 2.8, True, 20.5, 9.0, 6.5, 3.0),
    _r("us-mountain-az", 33.45, -112.07, -7, "NA", 0.350, 42.0, 3.2, True, 24.0, 10.0, 7.5, 2.0),
    _r("us-mountain-ut", 40.76, -111.89, -7, "NA", 0.550, 40.0, 3.2, True, 11.5, 13.5, 7.0, 1.0),
    _r("us-west-or", 45.60, -121.18, -8, "NA", 0.100, 38.0, 3.5, False, 12.5, 10.5, 7.0, 2.5),
    _r("us-west-ca", 37.34, -121.89, -8, "NA", 0.210, 60.0, 4.0, True, 16.0, 5.5, 7.0, 2.0),
    _r("ca-central-qc", 45.50, -73.57, -5, "NA", 0.020, 40.0, 3.0, False, 6.5, 15.0, 5.0, 1.0),
    _r("ca-west-ab", 51.05, -114.07, -7, "NA", 0.550, 60.0, 2.2, False, 4.5, 13.0, 6.5, 0.5),
    _r("mx-central-qro", 20.59, -100.39, -6, "NA", 0.420, 60.0, 4.5, True, 19.0, 3.5, 8.0, 0.5),
    # Europe (ENTSO-E bidding-zone day-ahead averages)
    _r("eu-west-ie", 53.35, -6.26, 0, "EU", 0.290, 110.0, 11.0, False, 10.0, 5.0, 3.5, 2.5),
    _r("eu-west-uk", 51.51, -0.13, 0, "EU", 0.240, 95.0, 11.0, False, 11.5, 7.0, 4.5, 2.0),
    _r("eu-west-fr", 48.86, 2.35, 1, "EU", 0.056, 80.0, 11.0, False, 12.5, 8.0, 5.0, 1.5),
    _r("eu-west-nl", 52.37, 4.90, 1, "EU", 0.330, 90.0, 11.0, False, 10.5, 7.0, 4.0, 1.5),
    _r("eu-central-de", 50.11, 8.68, 1, "EU", 0.381, 95.0, 11.0, False, 10.5, 9.0, 5.0, 2.5),
    _r("eu-central-ch", 47.37, 8.54, 1, "EU", 0.040, 90.0, 11.5, False, 9.5, 9.0, 5.0, 0.5),
    _r("eu-central-pl", 52.23, 21.01, 1, "EU", 0.660, 110.0, 11.5, False, 8.5, 10.5, 5.0, 0.5),
    _r("eu-south-es", 40.42, -3.70, 1, "EU", 0.150, 65.0, 11.0, True, 15.0, 10.0, 7.0, 1.0),
    _r("eu-south-it", 45.46, 9.19, 1, "EU", 0.330, 110.0, 11.5, True, 13.5, 10.5, 5.5, 1.0),
    _r("eu-north-se", 59.33, 18.07, 1, "EU", 0.040, 45.0, 11.0, False, 7.5, 10.0, 4.0, 1.0),
    _r("eu-north-no", 59.91, 10.75, 1, "EU", 0.030, 45.0, 11.0, False, 6.5, 10.5, 4.0, 0.5),
    _r("eu-north-fi", 60.17, 24.94, 2, "EU", 0.080, 50.0, 11.0, False, 6.0, 11.0, 3.5, 0.5),
    # Asia and the Middle East
    _r("ap-south-mum", 19.08, 72.88, 5.5, "AS", 0.713, 60.0, 10.0, True, 27.5, 2.5, 4.0, 1.5),
    _r("ap-south-hyd", 17.39, 78.49, 5.5, "AS", 0.713, 58.0, 10.0, True, 27.0, 4.5, 6.0, 1.0),
    _r("ap-southeast-sg", 1.35, 103.82, 8, "AS", 0.470, 120.0, 13.0, False, 27.5, 1.0, 3.5, 2.0),
    _r("ap-southeast-jkt", -6.21, 106.85, 7, "AS", 0.680, 80.0, 10.0, False, 28.0, 0.8, 4.0, 0.5),
    _r("ap-east-hk", 22.32, 114.17, 8, "AS", 0.600, 110.0, 13.0, False, 23.5, 5.5, 3.0, 0.5),
    _r("cn-north-bj", 39.90, 116.41, 8, "AS", 0.580, 70.0, 10.0, False, 13.0, 13.5, 5.5, 1.5),
    _r("ap-northeast-tyo", 35.68, 139.69, 9, "AS", 0.480, 110.0, 13.0, False, 16.5, 9.5, 4.0, 2.5),
    _r("ap-northeast-osa", 34.69, 135.50, 9, "AS", 0.480, 105.0, 13.0, False, 17.0, 10.0, 4.0, 0.5),
    _r("ap-northeast-kr", 37.57, 126.98, 9, "AS", 0.430, 95.0, 13.0, False, 12.5, 14.0, 5.0, 1.0),
    _r("me-central-uae", 25.20, 55.27, 4, "AS", 0.400, 60.0, 3.5, True, 28.0, 7.5, 6.0, 1.0),
    _r("me-central-sa", 24.71, 46.68, 3, "AS", 0.560, 50.0, 3.0, True, 26.5, 9.5, 7.5, 0.5),
    _r("il-central", 32.09, 34.78, 2, "AS", 0.500, 90.0, 6.0, True, 20.5, 6.0, 4.5, 0.5),
    # Oceania
    _r("ap-southeast-syd", -33.87, 151.21, 10, "OC", 0.600, 90.0, 9.0, True, 18.0, 4.5, 4.0, 1.0),
    _r("ap-southeast-mel", -37.81, 144.96, 10, "OC", 0.720, 85.0, 9.0, True, 15.0, 5.0, 5.5, 0.5),
    _r("ap-southeast-akl", -36.85, 174.76, 12, "OC", 0.100, 90.0, 8.0, False, 15.5, 4.0, 4.0, 0.3),
    # South America
    _r("sa-east-sp", -23.55, -46.63, -3, "SA", 0.090, 55.0, 10.0, True, 19.5, 3.5, 5.5, 1.0),
    _r("sa-west-scl", -33.45, -70.67, -4, "SA", 0.300, 65.0, 11.0, True, 14.5, 6.0, 8.5, 0.5),
    _r("sa-north-bog", 4.71, -74.07, -5, "SA", 0.150, 70.0, 7.0, False, 14.0, 0.5, 5.0, 0.3),
    # Africa
    _r("af-south-jnb", -26.20, 28.05, 2, "AF", 0.709, 70.0, 12.0, True, 16.0, 4.5, 7.5, 0.5),
    _r("af-south-cpt", -33.92, 18.42, 2, "AF", 0.709, 70.0, 12.0, True, 17.0, 4.0, 5.0, 0.3),
    _r("af-north-cai", 30.04, 31.24, 2, "AF", 0.470, 50.0, 5.0, True, 22.5, 7.0, 6.5, 0.3),
    _r("af-west-los", 6.52, 3.38, 1, "AF", 0.400, 90.0, 4.0, False, 27.0, 1.5, 3.5, 0.3),
    _r("af-east-nbo", -1.29, 36.82, 3, "AF", 0.100, 100.0, 14.0, False, 18.0, 1.5, 6.0, 0.3),
)


@dataclass(frozen=True)
class UserRegion:
    """A metro area where inference users sit; also an internet-exchange hub of the fiber graph.

    Attributes
    ----------
    name : str
        Metro name, e.g. ``"new-york"``.
    lat, lon : float
        Degrees.
    utc_offset : float
        Standard-time offset of local clock time from UTC, hours.
    continent : str
        One of :data:`CONTINENTS`.
    population : float
        Metro population, millions (relative inference demand weight).
    """

    name: str
    lat: float
    lon: float
    utc_offset: float
    continent: str
    population: float


def _u(*args) -> UserRegion:
    return UserRegion(*args)


USER_REGIONS: tuple[UserRegion, ...] = (
    _u("new-york", 40.71, -74.01, -5, "NA", 19.5),
    _u("washington", 38.91, -77.04, -5, "NA", 6.3),
    _u("atlanta", 33.75, -84.39, -5, "NA", 6.2),
    _u("miami", 25.76, -80.19, -5, "NA", 6.1),
    _u("chicago", 41.88, -87.63, -6, "NA", 9.4),
    _u("dallas", 32.78, -96.80, -6, "NA", 7.9),
    _u("denver", 39.74, -104.99, -7, "NA", 3.0),
    _u("phoenix", 33.45, -112.07, -7, "NA", 5.0),
    _u("los-angeles", 34.05, -118.24, -8, "NA", 13.0),
    _u("san-francisco", 37.77, -122.42, -8, "NA", 6.7),
    _u("seattle", 47.61, -122.33, -8, "NA", 4.0),
    _u("toronto", 43.65, -79.38, -5, "NA", 6.4),
    _u("montreal", 45.50, -73.57, -5, "NA", 4.3),
    _u("calgary", 51.05, -114.07, -7, "NA", 1.5),
    _u("mexico-city", 19.43, -99.13, -6, "NA", 21.8),
    _u("bogota", 4.71, -74.07, -5, "SA", 11.0),
    _u("sao-paulo", -23.55, -46.63, -3, "SA", 22.0),
    _u("rio-de-janeiro", -22.91, -43.17, -3, "SA", 13.5),
    _u("buenos-aires", -34.60, -58.38, -3, "SA", 15.5),
    _u("santiago", -33.45, -70.67, -4, "SA", 6.9),
    _u("lima", -12.05, -77.04, -5, "SA", 11.0),
    _u("london", 51.51, -0.13, 0, "EU", 14.0),
    _u("dublin", 53.35, -6.26, 0, "EU", 1.4),
    _u("lisbon", 38.72, -9.14, 0, "EU", 2.9),
    _u("madrid", 40.42, -3.70, 1, "EU", 6.8),
    _u("paris", 48.86, 2.35, 1, "EU", 11.2),
    _u("marseille", 43.30, 5.37, 1, "EU", 1.9),
    _u("amsterdam", 52.37, 4.90, 1, "EU", 2.5),
    _u("frankfurt", 50.11, 8.68, 1, "EU", 5.8),
    _u("milan", 45.46, 9.19, 1, "EU", 4.3),
    _u("stockholm", 59.33, 18.07, 1, "EU", 2.4),
    _u("warsaw", 52.23, 21.01, 1, "EU", 3.1),
    _u("istanbul", 41.01, 28.98, 3, "EU", 15.6),
    _u("tel-aviv", 32.09, 34.78, 2, "AS", 4.2),
    _u("riyadh", 24.71, 46.68, 3, "AS", 7.7),
    _u("dubai", 25.20, 55.27, 4, "AS", 3.6),
    _u("mumbai", 19.08, 72.88, 5.5, "AS", 21.3),
    _u("delhi", 28.61, 77.21, 5.5, "AS", 32.9),
    _u("bangalore", 12.97, 77.59, 5.5, "AS", 13.6),
    _u("singapore", 1.35, 103.82, 8, "AS", 6.0),
    _u("jakarta", -6.21, 106.85, 7, "AS", 11.2),
    _u("hong-kong", 22.32, 114.17, 8, "AS", 7.5),
    _u("shanghai", 31.23, 121.47, 8, "AS", 29.2),
    _u("beijing", 39.90, 116.41, 8, "AS", 21.8),
    _u("seoul", 37.57, 126.98, 9, "AS", 25.0),
    _u("tokyo", 35.68, 139.69, 9, "AS", 37.1),
    _u("osaka", 34.69, 135.50, 9, "AS", 19.0),
    _u("sydney", -33.87, 151.21, 10, "OC", 5.4),
    _u("melbourne", -37.81, 144.96, 10, "OC", 5.2),
    _u("auckland", -36.85, 174.76, 12, "OC", 1.7),
    _u("johannesburg", -26.20, 28.05, 2, "AF", 10.0),
    _u("cape-town", -33.92, 18.42, 2, "AF", 4.9),
    _u("cairo", 30.04, 31.24, 2, "AF", 22.2),
    _u("lagos", 6.52, 3.38, 1, "AF", 15.9),
    _u("nairobi", -1.29, 36.82, 3, "AF", 5.3),
)

#: Long-haul fiber between metros: submarine cables (and a few long terrestrial routes between
#: continents), named after a real system on that route.  Each is an edge of the fiber graph.
LONG_HAUL_LINKS: tuple[tuple[str, str, str], ...] = (
    ("new-york", "london", "TAT-14 / Apollo"),
    ("new-york", "dublin", "AEConnect-1"),
    ("washington", "madrid", "MAREA (Virginia Beach-Bilbao)"),
    ("new-york", "paris", "Dunant (Virginia-Saint-Hilaire)"),
    ("miami", "sao-paulo", "Monet / Seabras-1"),
    ("miami", "bogota", "ARCOS-1"),
    ("mexico-city", "bogota", "terrestrial Central America"),
    ("los-angeles", "tokyo", "FASTER (Oregon/LA-Japan)"),
    ("seattle", "tokyo", "Pacific Crossing-1"),
    ("los-angeles", "sydney", "Southern Cross"),
    ("los-angeles", "hong-kong", "Pacific Light Cable Network"),
    ("sydney", "singapore", "Indigo"),
    ("sydney", "auckland", "Tasman Global Access"),
    ("singapore", "mumbai", "SEA-ME-WE 5"),
    ("singapore", "jakarta", "SJC / Bersama"),
    ("singapore", "hong-kong", "APG"),
    ("hong-kong", "tokyo", "SJC-2"),
    ("mumbai", "dubai", "EIG / FALCON"),
    ("mumbai", "marseille", "PEACE / AAE-1 via Suez"),
    ("cairo", "marseille", "2Africa / SEA-ME-WE"),
    ("tel-aviv", "marseille", "Blue-Raman"),
    ("cairo", "tel-aviv", "terrestrial Sinai"),
    ("cairo", "riyadh", "terrestrial Red Sea"),
    ("lisbon", "lagos", "WACS / 2Africa"),
    ("lagos", "cape-town", "WACS"),
    ("mumbai", "nairobi", "TEAMS / SEACOM"),
    ("nairobi", "johannesburg", "EASSy"),
    ("sao-paulo", "lagos", "SAIL / SACS"),
    ("istanbul", "tel-aviv", "terrestrial Levant"),
)


@dataclass(frozen=True)
class Model:
    """A served model family: an inference class is a user region × a model.

    Attributes
    ----------
    name : str
        Short model name.
    revenue : float
        Mean revenue, $ per GPU-hour served.
    slo_ms : tuple of float
        (low, high) of the round-trip latency SLO, ms.
    latency_cost : tuple of float
        (low, high) of the latency cost, $ per GPU-hour per ms.
    share : float
        Relative share of inference demand.
    """

    name: str
    revenue: float
    slo_ms: tuple[float, float]
    latency_cost: tuple[float, float]
    share: float


MODELS: tuple[Model, ...] = (
    Model("chat-70b", 3.0, (50.0, 90.0), (0.003, 0.008), 0.35),
    Model("code-8b", 2.2, (30.0, 50.0), (0.005, 0.010), 0.20),
    Model("reasoning-400b", 4.0, (90.0, 120.0), (0.001, 0.004), 0.20),
    Model("vision-30b", 2.8, (60.0, 100.0), (0.002, 0.006), 0.15),
    Model("embed-1b", 2.0, (40.0, 80.0), (0.001, 0.005), 0.10),
)


def region_table(regions: tuple[Region, ...] = REGIONS) -> dict[str, np.ndarray]:
    """The region table as column arrays (one entry per region), for vectorized sampling."""
    cols = Region.__dataclass_fields__
    return {c: np.array([getattr(r, c) for r in regions], dtype=object if c in ("name", "continent") else None)
            for c in cols}


def user_region_table(users: tuple[UserRegion, ...] = USER_REGIONS) -> dict[str, np.ndarray]:
    """The user-metro table as column arrays (one entry per metro)."""
    cols = UserRegion.__dataclass_fields__
    return {c: np.array([getattr(u, c) for u in users], dtype=object if c in ("name", "continent") else None)
            for c in cols}


def region_index(name: str) -> int:
    """Index of the region called ``name`` in :data:`REGIONS` (KeyError if unknown)."""
    for i, r in enumerate(REGIONS):
        if r.name == name:
            return i
    raise KeyError(name)


def user_region_index(name: str) -> int:
    """Index of the metro called ``name`` in :data:`USER_REGIONS` (KeyError if unknown)."""
    for i, u in enumerate(USER_REGIONS):
        if u.name == name:
            return i
    raise KeyError(name)
