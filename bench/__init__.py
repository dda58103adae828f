"""stickyws benchmarks (``make bench``): the reference server against the seed article's Node.js stack.

Not part of the package and not run by ``make test``; see BENCHMARKS.md for what it measures and how.
"""
