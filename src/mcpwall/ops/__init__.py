"""Operations: the audit log, `mcpwall status`, hot reload of the policy, metrics."""
