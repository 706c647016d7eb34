"""The pass and the delivery state: checker, snoozes, retention, the state's readers."""
