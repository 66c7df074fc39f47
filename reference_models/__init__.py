"""Reference models: a digits CNN trained on real data, and MLPerf-Tiny-shaped networks."""
