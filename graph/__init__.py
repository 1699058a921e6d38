"""Flow graph: build a producer → topic → consumer graph from frames, then export or render it.

``build`` is pure (frames in, networkx graph out); ``export`` turns the graph into the
CLI's JSON and DOT; ``render`` draws it with pyvis as a self-contained HTML page.
"""
from eventscope.graph.build import build_graph

__all__ = ["build_graph"]
