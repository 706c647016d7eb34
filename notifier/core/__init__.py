"""Pure domain: types, the policy, durations, the clock, messages and limits."""
