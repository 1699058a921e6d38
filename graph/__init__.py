"""Flow graph: build a producer → topic → consumer graph from frames, then export or render it.

``build`` is pure (frames in, networkx graph out); ``export`` turns the graph into the
CLI's JSON and DOT; ``render`` draws it with pyvis as a self-contained HTML page.
Importing the package imports none of them: the collector reads ``infer`` alone and has no
use for networkx.
"""
__all__ = ["build_graph"]


def __getattr__(name: str):
    if name == "build_graph":
        from eventscope.graph.build import build_graph  # networkx only when a graph is built
        return build_graph
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
