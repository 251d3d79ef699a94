"""Model Context Protocol: attached MCP servers' tools join the registry (``client``, ``bridge``),
and our own tools are served to MCP clients at ``/mcp`` (``server``).

Importing this package is cheap: the ``mcp`` SDK is imported only by the modules that need it.
"""
