"""A fiber graph of sites and user metros, and the round-trip latencies L_{k,i} it implies.

Nodes are the user metros of :data:`~instances.regions.USER_REGIONS` (they double as internet
exchanges) and the data-center sites. Terrestrial fiber links each node to its few nearest
neighbours on the same continent (and each site to its nearest metro, so that a cluster of
co-located sites is never an island); submarine cables of
:data:`~instances.regions.LONG_HAUL_LINKS` join the continents. An edge's round-trip latency is

    great-circle km × route factor × 0.01 ms/km,

light in fiber covering ~200,000 km/s, i.e. 5 µs/km one way and 10 µs/km round trip; the route
factor (terrestrial 1.3–1.6, submarine 1.1–1.25) accounts for fiber following roads, rights of way
and landing stations rather than great circles. Latencies between nodes are shortest paths
(Dijkstra).
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx
import numpy as np

from .regions import LONG_HAUL_LINKS, USER_REGIONS, UserRegion

#: Mean Earth radius, km.
EARTH_RADIUS_KM = 6371.0
#: Round-trip time per km of fiber, ms: 2 × (1 km / 200,000 km/s).
RTT_MS_PER_KM = 0.01
#: Route factor ranges (fiber km / great-circle km).
TERRESTRIAL_ROUTE_FACTOR = (1.3, 1.6)
SUBMARINE_ROUTE_FACTOR = (1.1, 1.25)


def site_node(name: str) -> str:
    """Graph node id of the site called ``name``."""
    return f"site:{name}"


def user_node(name: str) -> str:
    """Graph node id of the user metro called ``name``."""
    return f"user:{name}"


def great_circle_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance (haversine), km; arguments in degrees, broadcast against each other."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dlat = p2 - p1
    dlon = np.radians(np.asarray(lon2) - np.asarray(lon1))
    h = np.sin(dlat / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def build_network(
    site_names: Sequence[str],
    site_lat: Sequence[float],
    site_lon: Sequence[float],
    site_continent: Sequence[str],
    *,
    seed: int = 0,
    k_nearest: int = 3,
    users: Sequence[UserRegion] = USER_REGIONS,
    long_haul: Sequence[tuple[str, str, str]] = LONG_HAUL_LINKS,
) -> nx.Graph:
    """Build the fiber graph of sites and user metros.

    Parameters
    ----------
    site_names : sequence of str
        Unique site names (nodes ``site:<name>``).
    site_lat, site_lon : sequence of float
        Site coordinates, degrees.
    site_continent : sequence of str
        Continent code of each site (see :data:`~instances.regions.CONTINENTS`).
    seed : int
        Seed of the route factors (numpy ``default_rng``); the topology does not depend on it.
    k_nearest : int
        Terrestrial links from each node to its nearest same-continent neighbours.
    users : sequence of UserRegion
        Metros (nodes ``user:<name>``); the long-haul links refer to them by name.
    long_haul : sequence of (str, str, str)
        (metro, metro, cable name) submarine / long-haul links.

    Returns
    -------
    networkx.Graph
        Connected. Nodes carry ``kind`` ("site" or "user"), ``name``, ``lat``, ``lon``, ``continent``;
        edges carry ``km`` (great circle), ``route_factor``, ``latency_ms`` (round trip), ``kind``
        ("terrestrial" or "submarine") and ``cable`` (name, submarine only).
    """
    n_users = len(users)
    ids = [user_node(u.name) for u in users] + [site_node(str(n)) for n in site_names]
    kinds = ["user"] * n_users + ["site"] * len(site_names)
    names = [u.name for u in users] + [str(n) for n in site_names]
    lat = np.concatenate([[u.lat for u in users], np.asarray(site_lat, dtype=float)])
    lon = np.concatenate([[u.lon for u in users], np.asarray(site_lon, dtype=float)])
    cont = np.array([u.continent for u in users] + [str(c) for c in site_continent], dtype=object)
    n = len(ids)
    if len(set(ids)) != n:
        raise ValueError("site names must be unique")

    dist = great_circle_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
    # Terrestrial fiber stays on one continent; oceans are crossed only by the named cables.
    land = np.where(cont[:, None] == cont[None, :], dist, np.inf)
    np.fill_diagonal(land, np.inf)

    terrestrial: set[tuple[int, int]] = set()

    def add(a: int, b: int) -> None:
        terrestrial.add((min(a, b), max(a, b)))

    # Metros: k nearest metros.  Sites: k nearest nodes of any kind, plus the nearest metro.
    metro_land = land[:n_users, :n_users]
    nearest_metros = np.argsort(metro_land, axis=1, kind="stable")[:, :k_nearest]
    for a, row in enumerate(nearest_metros):
        for b in row:
            if np.isfinite(metro_land[a, b]):
                add(a, int(b))
    if n > n_users:
        site_land = land[n_users:]
        nearest_any = np.argsort(site_land, axis=1, kind="stable")[:, :k_nearest]
        nearest_metro = np.argmin(site_land[:, :n_users], axis=1)
        for r in range(n - n_users):
            a = n_users + r
            for b in (*nearest_any[r], nearest_metro[r]):
                if np.isfinite(site_land[r, b]):
                    add(a, int(b))

    graph = nx.Graph()
    for i in range(n):
        graph.add_node(ids[i], kind=kinds[i], name=names[i], lat=float(lat[i]), lon=float(lon[i]),
                       continent=str(cont[i]))
    graph.add_edges_from((ids[a], ids[b]) for a, b in sorted(terrestrial))

    # Repair: each continent's terrestrial network must be connected (kNN graphs can split into
    # clusters); join the first component to its closest other one until one remains.
    position = {node: i for i, node in enumerate(ids)}
    for c in sorted(set(cont)):
        members = [ids[m] for m in np.flatnonzero(cont == c)]
        while True:
            comps = sorted(
                (sorted(position[v] for v in comp) for comp in nx.connected_components(graph.subgraph(members))),
                key=lambda comp: comp[0],
            )
            if len(comps) <= 1:
                break
            first = np.array(comps[0])
            rest = np.array([i for comp in comps[1:] for i in comp])
            sub = dist[np.ix_(first, rest)]
            a, b = np.unravel_index(np.argmin(sub), sub.shape)
            add(int(first[a]), int(rest[b]))
            graph.add_edge(ids[int(first[a])], ids[int(rest[b])])

    index = {name: i for i, name in enumerate(names[:n_users])}
    submarine = {}
    for a_name, b_name, cable in long_haul:
        a, b = index[a_name], index[b_name]
        key = (min(a, b), max(a, b))
        if key not in terrestrial:
            submarine[key] = cable

    # Route factors drawn in a fixed edge order, so the graph is a pure function of its inputs.
    rng = np.random.default_rng([int(seed), 0x6E6574])
    terr_edges = sorted(terrestrial)
    sub_edges = sorted(submarine)
    terr_factor = rng.uniform(*TERRESTRIAL_ROUTE_FACTOR, size=len(terr_edges))
    sub_factor = rng.uniform(*SUBMARINE_ROUTE_FACTOR, size=len(sub_edges))
    for (a, b), f in zip(terr_edges, terr_factor, strict=True):
        km = float(dist[a, b])
        graph.add_edge(ids[a], ids[b], km=km, route_factor=float(f), latency_ms=km * f * RTT_MS_PER_KM,
                       kind="terrestrial", cable="")
    for (a, b), f in zip(sub_edges, sub_factor, strict=True):
        km = float(dist[a, b])
        graph.add_edge(ids[a], ids[b], km=km, route_factor=float(f), latency_ms=km * f * RTT_MS_PER_KM,
                       kind="submarine", cable=submarine[(a, b)])
    if not nx.is_connected(graph):  # only possible with custom metro or cable tables
        raise ValueError("fiber graph is not connected: add long-haul links between its components")
    return graph


def latency_matrix(graph: nx.Graph, sources: Sequence[str], targets: Sequence[str], *,
                   access_ms: float = 0.0) -> np.ndarray:
    """Shortest-path round-trip latencies between graph nodes.

    Parameters
    ----------
    graph : networkx.Graph
        From :func:`build_network` (edge weight ``latency_ms``).
    sources, targets : sequence of str
        Node ids (:func:`site_node`, :func:`user_node`).
    access_ms : float
        Added to every finite entry: the metro access network outside the graph (last mile), ms.

    Returns
    -------
    numpy.ndarray
        (len(sources), len(targets)) round-trip latency, ms; ``inf`` where unreachable.
    """
    out = np.full((len(sources), len(targets)), np.inf)
    cache: dict[str, dict[str, float]] = {}
    for r, src in enumerate(sources):
        if src not in cache:
            cache[src] = nx.single_source_dijkstra_path_length(graph, src, weight="latency_ms")
        lengths = cache[src]
        out[r] = [lengths.get(t, np.inf) for t in targets]
    return np.where(np.isfinite(out), out + access_ms, out)
