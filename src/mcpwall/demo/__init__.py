"""``mcpwall demo``: a real MCP server behind mcpwall, driven by a scripted agent."""
