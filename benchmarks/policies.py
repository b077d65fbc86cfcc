"""The policies the benchmark runs mcpwall with, written as YAML text."""

from __future__ import annotations

ALLOW_ALL = 'version: "1"\ndescription: "allow everything"\ntools: {}\n'

# The tool the realistic workload calls: argument conditions, a rate limit and a spend
# counter, all passing, so that every call takes the whole path through the store.
REALISTIC_TOOL = "create_charge"
DENIED_TOOL = "delete_customer"


def realistic() -> str:
    """50 tools: a payment tool with conditions, a rate limit and a daily spend cap;
    denials, rate limits and conditions on the others; hidden tools and globs."""
    lines = [
        'version: "1"',
        'description: "a realistic policy: 50 tools"',
        'hide: [admin_reset, "debug_*", "internal_*"]',
        "tools:",
        f"  {REALISTIC_TOOL}:",
        "    rules:",
        "      - name: max single charge",
        "        conditions:",
        "          - {path: args.amount, op: lte, value: 50000}",
        "          - {path: args.currency, op: in, value: [usd, eur, gbp]}",
        '          - {path: args.description, op: regex, value: "^[A-Za-z0-9 -]+$"}',
        "        on_deny: Single charge cannot exceed $500.00",
        "      - name: daily spend cap",
        "        conditions:",
        f"          - {{path: state.{REALISTIC_TOOL}.daily_spend, op: lte, value: 1000000000000}}",
        "        state: {counter: daily_spend, window: day, increment_from: args.amount}",
        "      - name: charges per minute",
        "        rate_limit: 100000000/minute",
        f"  {DENIED_TOOL}:",
        "    rules:",
        "      - {action: deny, reason: Customer deletion is not permitted via AI agents}",
    ]
    for index in range(48):
        kind = index % 4
        lines.append(f"  tool_{index:02d}:")
        lines.append("    rules:")
        if kind == 0:
            lines.append("      - {action: allow}")
        elif kind == 1:
            lines.append(f"      - {{name: limit {index}, rate_limit: 30/minute}}")
        elif kind == 2:
            lines.append(f"      - name: namespaces {index}")
            lines.append("        conditions:")
            lines.append("          - {path: args.namespace, op: in, value: [default, web]}")
        else:
            lines.append("      - action: deny")
            lines.append("        when: [{path: args.namespace, op: eq, value: kube-system}]")
            lines.append(f"        reason: not in kube-system ({index})")
    return "\n".join(lines) + "\n"


def many_tools(count: int) -> str:
    """``count`` tools with one condition each; the benchmark calls the last one."""
    lines = ['version: "1"', "tools:"]
    for index in range(count):
        lines += [
            f"  tool_{index}:",
            "    rules:",
            f"      - name: rule {index}",
            "        conditions: [{path: args.n, op: lt, value: 100}]",
        ]
    return "\n".join(lines) + "\n"


def many_rules(count: int) -> str:
    """One tool with ``count`` passing condition rules."""
    lines = ['version: "1"', "tools:", "  tool_0:", "    rules:"]
    for index in range(count):
        lines += [
            f"      - name: rule {index}",
            f"        conditions: [{{path: args.n, op: lt, value: {100 + index}}}]",
        ]
    return "\n".join(lines) + "\n"


def many_hidden(count: int) -> str:
    """``count`` hidden globs, none of which hides the tool the benchmark calls."""
    globs = ", ".join(f'"hidden_{index}_*"' for index in range(count))
    return f'version: "1"\nhide: [{globs}]\ntools:\n  tool_0: {{rules: []}}\n'
